"""Few-shot probe: k shots per class from a pool that excludes the reserve, draws fixed by the benchmark's split_seed,
hyper-parameters never chosen on the eval split (inside the shots for k >= 2, on the reserve for k = 1), the
record's per-draw details."""

from __future__ import annotations

import pytest
import torch

import probes.fewshot as fewshot
from bench.benchmarks import get_benchmark
from probes.fewshot import FEWSHOT_DRAWS, draw_seed, draw_shots, fewshot_probe
from probes.selection import holdout_split

PROTOCOL = get_benchmark("imagenette-mini-v1").model_copy(update={"linear_lr": (0.1, 1.0), "linear_wd": (0.0, 1e-2),
                                                                  "linear_epochs": 10})
FAST = dict(num_classes=4, min_steps=20)


def blobs(n, d=16, c=4, spread=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=torch.Generator().manual_seed(7)) * 2
    y = torch.arange(n) % c
    return centers[y] + spread * torch.randn(n, d, generator=g), y


def test_shots_are_k_per_class_from_the_pool_and_fixed_by_the_seed():
    _, y = blobs(200)
    pool, reserve = holdout_split(y, 0.1, 0)
    idx = draw_shots(y, pool, 5, draw_seed(0, 5, 0))
    assert torch.equal(torch.bincount(y[idx]), torch.full((4,), 5))
    assert set(idx.tolist()) <= set(pool.tolist()) and not set(idx.tolist()) & set(reserve.tolist())
    assert torch.equal(idx, draw_shots(y, pool, 5, draw_seed(0, 5, 0)))            # fixed
    assert not torch.equal(idx, draw_shots(y, pool, 5, draw_seed(0, 5, 1)))        # another draw
    assert not torch.equal(idx, draw_shots(y, pool, 5, draw_seed(1, 5, 0)))        # another split_seed
    assert len(draw_shots(y, pool, 1000, 3)) == len(pool)                          # a small class gives all it has


def test_selection_never_reads_the_eval_labels():
    x, y = blobs(240)
    xt, yt = blobs(80, seed=1)
    a = fewshot_probe(x, y, xt, yt, PROTOCOL, ks=(1, 5), **FAST)
    b = fewshot_probe(x, y, xt, yt[torch.randperm(80, generator=torch.Generator().manual_seed(0))], PROTOCOL,
                      ks=(1, 5), **FAST)
    assert a.selected == b.selected and a.holdout_top1 == b.holdout_top1 and a.draws == b.draws
    assert a.top1 != b.top1  # only the single scoring saw the (shuffled) labels
    assert min(a.top1[5]) > 90  # separable blobs: 5 shots are enough


def test_one_shot_selects_on_the_reserve_and_more_shots_inside_the_shots(monkeypatch):
    x, y = blobs(240)
    xt, yt = blobs(40, seed=1)
    seen = []
    real = fewshot.linear_probe

    def spy(train_feats, train_labels, *args, select_on=None, **kw):
        seen.append((len(train_feats), select_on))
        return real(train_feats, train_labels, *args, select_on=select_on, **kw)

    monkeypatch.setattr(fewshot, "linear_probe", spy)
    res = fewshot_probe(x, y, xt, yt, PROTOCOL, ks=(1, 5), **FAST)
    _, reserve = holdout_split(y, PROTOCOL.holdout_frac, PROTOCOL.split_seed)
    ones, fives = seen[:FEWSHOT_DRAWS], seen[FEWSHOT_DRAWS:]
    for n, hold in ones:
        assert n == 4 and torch.equal(hold[0], x[reserve]) and torch.equal(hold[1], y[reserve])
    assert all(n == 20 and hold is None for n, hold in fives)  # the probe's own hold-out, inside the 20 shots
    assert [d["shots"] for d in res.draws[1]] == [4] * FEWSHOT_DRAWS


def test_report_means_over_draws_and_keeps_each_draw():
    x, y = blobs(240)
    xt, yt = blobs(40, seed=1)
    res = fewshot_probe(x, y, xt, yt, PROTOCOL, ks=(1, 5), **FAST)
    scores, holdout, selected, details = res.report()
    assert set(scores) == {"fewshot_1_top1", "fewshot_1_top5", "fewshot_5_top1", "fewshot_5_top5"}
    assert scores["fewshot_5_top1"] == pytest.approx(sum(res.top1[5]) / FEWSHOT_DRAWS, abs=0.01)
    assert set(holdout) == {"fewshot_1_top1", "fewshot_5_top1"}
    assert len(selected["fewshot_5"]["lr"]) == FEWSHOT_DRAWS
    draws = details["by_k"]["5"]["draws"]
    assert len(draws) == FEWSHOT_DRAWS and len({d["sha256"] for d in draws}) == FEWSHOT_DRAWS
    assert draws[0]["seed"] == draw_seed(PROTOCOL.split_seed, 5, 0) and details["ks"] == [1, 5]


@pytest.mark.slow
def test_evaluate_encoder_runs_the_fewshot_probe():
    from torch import nn

    from bench.data import ImageData
    from probes.evaluate import evaluate_encoder

    def split(n, name, seed):
        labels = torch.arange(n) % 3
        noise = torch.randint(0, 80, (n, 3, 16, 16), generator=torch.Generator().manual_seed(seed))
        return ImageData((labels.view(-1, 1, 1, 1) * 80 + noise).to(torch.uint8), labels, ["a", "b", "c"],
                         f"fp-{name}", "test", name)

    encoder = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())  # 12-d colour means
    report = evaluate_encoder(encoder, split(90, "train", 0), split(30, "val", 1),
                              PROTOCOL.model_copy(update={"img_size": 16}), probes=("fewshot",), log=None)
    assert {f"fewshot_{k}_top1" for k in fewshot.FEWSHOT_KS} <= set(report["scores"])
    assert report["scores"]["fewshot_5_top1"] > 90  # colour carries the label
    # 30 train images per class, 3 of them in the reserve: 25 shots of 27, one of 27
    assert [report["fewshot"]["by_k"][k]["draws"][0]["shots"] for k in ("1", "25")] == [3, 75]
    assert set(report["probe_time_s"]) == {"features", "estimators", "fewshot"}
