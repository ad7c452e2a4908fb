"""Protocol hygiene: hyper-parameters are selected on a stratified hold-out of *train*, or on the rows a dataset
defines for selection (its official val split, inside train + val)."""

from __future__ import annotations

import torch


def holdout_split(labels: torch.Tensor, frac: float = 0.1, seed: int = 0, holdout: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit_idx, holdout_idx): per class, round(frac * n) samples held out, clipped to [1, n - 1] when
    n >= 2 (every class keeps a fit sample); singleton classes stay in fit. ``holdout`` (row indices): the
    dataset's own selection rows (e.g. Flowers-102's val inside train + val) are the hold-out, all others fit."""
    if holdout is not None:
        mask = torch.zeros(len(labels), dtype=torch.bool)
        mask[holdout] = True
        return torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()
    g = torch.Generator().manual_seed(seed)
    fit, hold = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_hold = min(len(idx) - 1, max(1, round(frac * len(idx)))) if len(idx) >= 2 else 0
        hold.append(idx[:n_hold])
        fit.append(idx[n_hold:])
    return torch.cat(fit).sort().values, torch.cat(hold).sort().values
