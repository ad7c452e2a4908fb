"""Low-shot linear probes: the linear probe of :mod:`probes.linear` trained on only SimCLR's 1 % / 10 %
ImageNet train subsets (``google-research/simclr`` ``imagenet_subsets/``), scored on the full eval split.

Same protocol as the full linear probe: (lr, wd) are selected on a stratified hold-out carved out of the
*subset* (:func:`probes.selection.holdout_split` inside :func:`probes.linear.linear_probe`), then the
chosen probe is refit on the whole subset and scored once. Scores: ``linear_1pct_top1``,
``linear_10pct_top1`` (and top-5)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from bench.data.imagenet import lowshot_indices
from probes.features import extract_features
from probes.linear import linear_probe
from probes.result import ProbeResult

#: probe name -> low-shot subset (bench.data.imagenet.LOWSHOT_SUBSETS)
LOWSHOT_PROBES = {"linear_1pct": "1pct", "linear_10pct": "10pct"}


class _Rows:
    """Rows ``idx`` of a (memory-mapped) image tensor, gathered per batch (never all copied at once)."""

    def __init__(self, images: torch.Tensor, idx: torch.Tensor):
        self.images, self.idx = images, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, s: slice) -> torch.Tensor:
        return self.images[self.idx[s]]


def subset_features(encoder: nn.Module, train, idx: torch.Tensor, *, train_feats: torch.Tensor | None = None,
                    **extract_kw) -> torch.Tensor:
    """Features of train rows ``idx``: sliced from ``train_feats`` when the full split's are at hand,
    else extracted for those rows only (cached under their own key)."""
    if train_feats is not None:
        return train_feats[idx]
    digest = hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16]
    return extract_features(encoder, _Rows(train.images, idx), data_key=f"{train.split}[{digest}]:{train.fingerprint}",
                            **extract_kw)


def lowshot_probe(encoder: nn.Module, train, test, test_feats: torch.Tensor, protocol, subset: str, *,
                  train_feats: torch.Tensor | None = None, device=None, cache_dir=None) -> ProbeResult:
    """The benchmark's linear probe (grid, epochs, hold-out fraction) on the ``subset`` rows of ``train``
    (``1pct``, ``10pct`` or a file of image names); ``train`` must carry file names (an ImageNet spec)."""
    idx = lowshot_indices(train, subset)
    feats = subset_features(encoder, train, idx, train_feats=train_feats, img_size=protocol.img_size,
                            crop_pct=protocol.crop_pct, device=device, cache_dir=cache_dir)
    return linear_probe(feats, train.labels[idx], test_feats, test.labels, lrs=protocol.linear_lr,
                        wds=protocol.linear_wd, epochs=protocol.linear_epochs, batch_size=protocol.linear_batch_size,
                        holdout_frac=protocol.holdout_frac, seed=protocol.split_seed,
                        num_classes=len(train.classes), device=device)
