"""Protocol hygiene: hyper-parameters are selected on a stratified hold-out of *train*."""

from __future__ import annotations

import torch


def holdout_split(labels: torch.Tensor, frac: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit_idx, holdout_idx): per class, round(frac * n) samples held out, clipped to [1, n - 1] when
    n >= 2 (every class keeps a fit sample); singleton classes stay in fit."""
    g = torch.Generator().manual_seed(seed)
    fit, hold = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_hold = min(len(idx) - 1, max(1, round(frac * len(idx)))) if len(idx) >= 2 else 0
        hold.append(idx[:n_hold])
        fit.append(idx[n_hold:])
    return torch.cat(fit).sort().values, torch.cat(hold).sort().values
