"""Small loss functions shared between methods (plain functions, the formula in the docstring, no state)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo (Kozachenko-Leonenko entropy estimator; Sablayrolles et al., 2019; DINOv2's definition): with the rows
    of x (B, D) L2-normalised to u_i and rho_i = min_{j != i} ||u_i - u_j|| the distance to the nearest other row,

        L = - (1 / B) sum_i log(rho_i + eps)

    It falls as the features spread out over the sphere (each pushed away from its nearest neighbour in the batch).
    """
    u = F.normalize(x.float(), dim=-1, eps=eps)
    sim = u @ u.T
    sim.fill_diagonal_(-2.0)                       # never pick yourself
    nearest = sim.argmax(1)
    return -torch.log(F.pairwise_distance(u, u[nearest], eps=eps) + eps).mean()
