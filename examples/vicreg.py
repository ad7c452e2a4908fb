"""VICReg (Bardes, Ponce & LeCun, 2022) as a one-file ssl-bench plugin: the example for `bench submit`.

    bench submit examples/vicreg.py --benchmark imagenette64-v1 --seeds 2 --recipe examples/vicreg.yaml

Two views -> backbone -> expander (Linear-BN-ReLU x2, Linear) -> z1, z2 (N x D), and

    L = lambda * mean((z1 - z2)^2)                                      (invariance)
      + mu * [ v(z1) + v(z2) ],  v(z) = mean_j relu(1 - sqrt(Var(z_j) + eps))      (variance)
      + nu * [ c(z1) + c(z2) ],  c(z) = sum_{i != j} Cov(z)_ij^2 / D                (covariance)

with lambda = mu = 25, nu = 1, eps = 1e-4 (the paper's defaults).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from bench.augment import ViewSpec
from methods.base import Method, projection_mlp, variance_covariance


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 25.0, mu: float = 25.0, nu: float = 1.0,
                eps: float = 1e-4) -> torch.Tensor:
    (v1, c1), (v2, c2) = variance_covariance(z1, eps), variance_covariance(z2, eps)
    return lambd * F.mse_loss(z1, z2) + mu * (v1 + v2) + nu * (c1 + c2)


class VICReg(Method):
    name = "vicreg"
    views = [ViewSpec.byol(blur_p=0.0, solarize_p=0.0), ViewSpec.byol(blur_p=0.0, solarize_p=0.2)]

    def __init__(self, backbone, proj_hidden_dim: int = 2048, proj_dim: int = 2048, lambd: float = 25.0,
                 mu: float = 25.0, nu: float = 1.0):
        super().__init__(backbone)
        self.expander = projection_mlp(backbone.embed_dim, proj_hidden_dim, proj_dim, num_layers=3)
        self.lambd, self.mu, self.nu = lambd, mu, nu

    def training_loss(self, views):
        h = self.backbone(torch.cat(views))
        z1, z2 = self.expander(h).float().chunk(2)
        loss = vicreg_loss(z1, z2, self.lambd, self.mu, self.nu)
        return {"loss": loss, "embedding": h[: len(views[0])].detach()}
