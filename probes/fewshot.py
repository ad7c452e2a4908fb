"""Few-shot transfer: the linear probe of :mod:`probes.linear` fit on k labelled train images per class
(k in ``FEWSHOT_KS``), each k averaged over ``FEWSHOT_DRAWS`` fixed draws of the shots, scored on the eval split.

Protocol (no eval label is ever read before the single scoring of the chosen probe):

- train is split once by :func:`probes.selection.holdout_split` (the benchmark's ``holdout_frac`` and
  ``split_seed``, or the dataset's own val rows where it has them) into a *pool* the shots are drawn from and
  a *reserve* they never come from;
- draw d of k shots takes, per class, k pool rows in the order of a permutation seeded by
  :func:`draw_seed` (``split_seed``, k, d): fixed by the benchmark, the same for every encoder;
- (lr, wd) are chosen from the benchmark's linear grid on a hold-out *inside the shots* (the linear probe's own
  stratified hold-out, at least one shot per class) for k >= 2; with k = 1 there is no shot to spare, so the
  grid is fit on the shots and chosen on the reserve (train images outside the pool), then the chosen probe is
  refit on all the shots and scored once;
- every probe trains for at least ``FEWSHOT_MIN_STEPS`` SGD steps (k x classes images make few steps per
  epoch; the benchmark's ``linear_epochs`` when that is more).

Scores: ``fewshot_<k>_top1`` / ``_top5``, the mean over the draws; the record's ``fewshot`` field keeps each
draw's scores, chosen hyper-parameters, seed, shot count and the sha256 of its sorted train indices."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from probes.linear import linear_probe
from probes.selection import holdout_split

FEWSHOT_KS = (1, 5, 10, 25)
FEWSHOT_DRAWS = 3
FEWSHOT_MIN_STEPS = 100

SELECTION = ("k >= 2: (lr, wd) chosen on a hold-out inside the shots; k = 1: chosen on the train rows outside the "
             "shot pool (the benchmark's train hold-out); the chosen probe refit on all the shots")


def draw_seed(split_seed: int, k: int, draw: int) -> int:
    """The generator seed of draw ``draw`` of ``k`` shots: a function of the benchmark's split_seed only."""
    return int(hashlib.sha256(f"fewshot|{split_seed}|{k}|{draw}".encode()).hexdigest()[:12], 16)


def draw_shots(labels: torch.Tensor, pool: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Sorted train indices: per class, the first k pool rows of a ``seed``-ed permutation (all of them when the
    class has fewer than k)."""
    g = torch.Generator().manual_seed(seed)
    pool_labels = labels[pool]
    picks = []
    for c in torch.unique(pool_labels):
        rows = pool[pool_labels == c]
        picks.append(rows[torch.randperm(len(rows), generator=g)[:k]])
    return torch.cat(picks).sort().values


def indices_sha256(idx: torch.Tensor) -> str:
    return hashlib.sha256(idx.to(torch.int64).numpy().tobytes()).hexdigest()


@dataclass
class FewShotResult:
    """Per k: the draws' top-1 / top-5 (percent), hold-out top-1 of the chosen point, chosen (lr, wd), draw info."""
    top1: dict[int, list[float]] = field(default_factory=dict)
    top5: dict[int, list[float]] = field(default_factory=dict)
    holdout_top1: dict[int, list[float]] = field(default_factory=dict)
    selected: dict[int, list[dict]] = field(default_factory=dict)
    draws: dict[int, list[dict]] = field(default_factory=dict)

    def report(self) -> tuple[dict, dict, dict, dict]:
        """(scores, holdout, selected, details) in the shapes a record keeps: means over draws as
        ``fewshot_<k>_top1``, the chosen points per draw as lists, the per-draw details as the ``fewshot`` field."""
        mean = lambda v: round(sum(v) / len(v), 2)  # noqa: E731
        scores, holdout, selected = {}, {}, {}
        for k in self.top1:
            scores[f"fewshot_{k}_top1"], scores[f"fewshot_{k}_top5"] = mean(self.top1[k]), mean(self.top5[k])
            holdout[f"fewshot_{k}_top1"] = mean(self.holdout_top1[k])
            selected[f"fewshot_{k}"] = {hp: [s[hp] for s in self.selected[k]] for hp in ("lr", "wd")}
        details = {"ks": list(self.top1), "draws": FEWSHOT_DRAWS, "selection": SELECTION,
                   "min_steps": FEWSHOT_MIN_STEPS,
                   "by_k": {str(k): {"top1": [round(v, 2) for v in self.top1[k]],
                                     "top5": [round(v, 2) for v in self.top5[k]],
                                     "holdout_top1": [round(v, 2) for v in self.holdout_top1[k]],
                                     "draws": self.draws[k]} for k in self.top1}}
        return scores, holdout, selected, details


def fewshot_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                  test_labels: torch.Tensor, protocol, *, num_classes: int, ks=FEWSHOT_KS, draws: int = FEWSHOT_DRAWS,
                  min_steps: int = FEWSHOT_MIN_STEPS, holdout: torch.Tensor | None = None,
                  device=None) -> FewShotResult:
    """k-shot linear probes on frozen features with ``protocol``'s linear grid (see the module docstring).
    ``holdout``: the dataset's own selection rows of train (its val split, ``TorchvisionData.holdout``): then
    they are the reserve and the shots come from the other rows."""
    seed = protocol.split_seed
    pool, reserve = holdout_split(train_labels, protocol.holdout_frac, seed, holdout)
    res = FewShotResult()
    reserve_rows = (train_feats[reserve], train_labels[reserve])  # k = 1 selects on them (no hold-out in 1 shot)
    for k in ks:
        for d in range(draws):
            s = draw_seed(seed, k, d)
            idx = draw_shots(train_labels, pool, k, s)
            steps_per_epoch = math.ceil(len(idx) / protocol.linear_batch_size)
            epochs = max(protocol.linear_epochs, math.ceil(min_steps / steps_per_epoch))
            select_on = reserve_rows if k == 1 else None
            r = linear_probe(train_feats[idx], train_labels[idx], test_feats, test_labels, lrs=protocol.linear_lr,
                             wds=protocol.linear_wd, epochs=epochs, batch_size=protocol.linear_batch_size,
                             holdout_frac=protocol.holdout_frac, seed=seed, num_classes=num_classes, device=device,
                             select_on=select_on)
            for store, value in ((res.top1, r.top1), (res.top5, r.top5), (res.holdout_top1, r.holdout_top1),
                                 (res.selected, r.selected),
                                 (res.draws, {"seed": s, "shots": len(idx), "sha256": indices_sha256(idx)})):
                store.setdefault(k, []).append(value)
    return res
