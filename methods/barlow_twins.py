"""Barlow Twins (Zbontar et al., 2021): make the cross-correlation of two views' embeddings the identity."""

from __future__ import annotations

import torch

from bench import distributed
from bench.augment import ViewSpec
from methods import register
from methods.base import Method, projection_mlp


def _standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    # batch-norm without affine, as the official code: biased variance over the batch
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """With z standardised along the batch (N samples) and C = z1n^T z2n / N (D x D):

        L = sum_i (1 - C_ii)^2  +  lambd * sum_i sum_{j != i} C_ij^2

    Under DDP z1 and z2 are gathered (with gradient) first: N, the standardisation and C are those of
    the global batch, and every rank returns the global loss.
    """
    z1, z2 = distributed.gather(z1.float()), distributed.gather(z2.float())
    n = z1.shape[0]
    c = _standardize(z1).T @ _standardize(z2) / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


@register
class BarlowTwins(Method):
    name = "barlow-twins"
    # asymmetric BYOL augmentations: blur 1.0 / 0.1, solarize 0.0 / 0.2
    views = [ViewSpec.byol(blur_p=1.0, solarize_p=0.0), ViewSpec.byol(blur_p=0.1, solarize_p=0.2)]

    def __init__(self, backbone, proj_hidden_dim: int = 2048, proj_dim: int = 2048,
                 lambd: float = 5e-3, scale_loss: float = 1.0):
        super().__init__(backbone)
        self.projector = projection_mlp(backbone.embed_dim, proj_hidden_dim, proj_dim, num_layers=3)
        self.lambd, self.scale_loss = lambd, scale_loss

    def training_loss(self, views):
        h1, h2 = self.backbone(views[0]), self.backbone(views[1])
        loss = barlow_twins_loss(self.projector(h1), self.projector(h2), self.lambd)
        return {"loss": self.scale_loss * loss, "embedding": h1.detach()}
