"""Cross-entropy-method planning over action sequences (as in V-JEPA 2-AC / PlaNet).

``cem_plan(cost, horizon, action_dim)`` keeps a diagonal Gaussian over (horizon, action_dim)
action sequences; each iteration samples ``samples`` sequences, clamps them to the action box,
scores them with ``cost`` ((S, H, A) -> (S,), lower is better; batched, e.g. a world-model rollout
plus an L1 distance to a goal embedding), and refits mean / std to the ``elites`` best. Returns the
final mean (H, A); model-predictive control executes its first action and re-plans.
"""

from __future__ import annotations

from typing import Callable

import torch


def cem_plan(cost: Callable[[torch.Tensor], torch.Tensor], horizon: int, action_dim: int, *, iters: int = 6,
             samples: int = 256, elites: int = 32, low: float = -1.0, high: float = 1.0, init_std: float = 1.0,
             min_std: float = 0.05, generator: torch.Generator | None = None,
             init_mean: torch.Tensor | None = None) -> torch.Tensor:
    if not 0 < elites <= samples:
        raise ValueError(f"need 0 < elites <= samples, got elites={elites}, samples={samples}")
    mean = torch.zeros(horizon, action_dim) if init_mean is None else init_mean.clone().float()
    std = torch.full((horizon, action_dim), float(init_std))
    best, best_cost = mean.clamp(low, high), float("inf")
    for _ in range(iters):
        noise = torch.randn(samples, horizon, action_dim, generator=generator)
        seqs = (mean + std * noise).clamp(low, high)
        seqs[0] = mean.clamp(low, high)  # the current mean always competes
        costs = cost(seqs)
        order = costs.argsort()[:elites]
        if float(costs[order[0]]) < best_cost:
            best, best_cost = seqs[order[0]].clone(), float(costs[order[0]])
        elite = seqs[order]
        mean, std = elite.mean(0), elite.std(0).clamp(min=min_std)
    return best
