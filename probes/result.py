"""What every probe returns, and the one top-k accuracy used by all of them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ProbeResult:
    top1: float                      # percent, on the eval split (scored once)
    top5: float
    selected: dict                   # chosen hyper-parameters
    holdout_top1: float              # the chosen point's top-1 on the train hold-out
    grid: dict[str, float] = field(default_factory=dict)  # hold-out top-1 per grid point


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> tuple[float, ...]:
    """Percent of rows whose label is among the k highest scores (k clipped to the class count)."""
    out = []
    for k in ks:
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices
        out.append(float((top == labels.view(-1, 1)).any(1).float().mean() * 100))
    return tuple(out)


def pick_best(grid: dict[str, float]) -> str:
    """Highest hold-out accuracy; ties go to the first point in grid order (deterministic)."""
    best = max(grid.values())
    return next(k for k, v in grid.items() if v == best)
