"""Cross-entropy-method planning over action sequences (as in V-JEPA 2-AC / PlaNet).

``cem_plan(cost, horizon, action_dim)`` keeps a diagonal Gaussian over (horizon, action_dim)
action sequences; each iteration samples ``samples`` sequences, clamps them to the action box,
scores them with ``cost`` ((S, H, A) -> (S,), lower is better; batched, e.g. a world-model rollout
plus an L1 distance to a goal embedding), and refits mean / std to the ``elites`` best. Returns the
best sequence seen; model-predictive control executes its first action and re-plans.

``cem_plan_batch(cost, batch, horizon, action_dim)`` runs ``batch`` independent problems at once
(cost (E, S, H, A) -> (E, S)): one world-model call scores every sample of every episode.
"""

from __future__ import annotations

from typing import Callable

import torch


def cem_plan_batch(cost: Callable[[torch.Tensor], torch.Tensor], batch: int, horizon: int, action_dim: int, *,
                   iters: int = 6, samples: int = 256, elites: int = 32, low: float = -1.0, high: float = 1.0,
                   init_std: float = 1.0, min_std: float = 0.05, generator: torch.Generator | None = None,
                   init_mean: torch.Tensor | None = None) -> torch.Tensor:
    """``batch`` CEM problems in parallel: returns each one's best sequence (batch, horizon, action_dim)."""
    if not 0 < elites <= samples:
        raise ValueError(f"need 0 < elites <= samples, got elites={elites}, samples={samples}")
    shape = (batch, horizon, action_dim)
    mean = torch.zeros(shape) if init_mean is None else init_mean.clone().float().reshape(shape)
    std = torch.full(shape, float(init_std))
    best, best_cost = mean.clamp(low, high), torch.full((batch,), float("inf"))
    rows = torch.arange(batch)
    for _ in range(iters):
        noise = torch.randn(batch, samples, horizon, action_dim, generator=generator)
        seqs = (mean[:, None] + std[:, None] * noise).clamp(low, high)
        seqs[:, 0] = mean.clamp(low, high)  # the current mean always competes
        costs = cost(seqs)
        order = costs.argsort(1)[:, :elites]
        top = costs[rows, order[:, 0]]
        better = top < best_cost
        best = torch.where(better[:, None, None], seqs[rows, order[:, 0]], best)
        best_cost = torch.where(better, top, best_cost)
        elite = seqs[rows[:, None], order]  # (batch, elites, H, A)
        mean, std = elite.mean(1), elite.std(1).clamp(min=min_std)
    return best


def cem_plan(cost: Callable[[torch.Tensor], torch.Tensor], horizon: int, action_dim: int, *, iters: int = 6,
             samples: int = 256, elites: int = 32, low: float = -1.0, high: float = 1.0, init_std: float = 1.0,
             min_std: float = 0.05, generator: torch.Generator | None = None,
             init_mean: torch.Tensor | None = None) -> torch.Tensor:
    return cem_plan_batch(lambda seqs: cost(seqs[0])[None], 1, horizon, action_dim, iters=iters, samples=samples,
                          elites=elites, low=low, high=high, init_std=init_std, min_std=min_std,
                          generator=generator, init_mean=init_mean)[0]
