"""SimCLR (Chen et al., 2020): contrast two augmented views of each image against the batch."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from bench.augment import ViewSpec
from methods import register
from methods.base import Method, projection_mlp


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalised-temperature cross-entropy over the 2N views.

    With u = z / ||z|| for all 2N embeddings and s_ij = u_i . u_j / tau, anchor i's positive is
    its other view p(i):

        l_i = -log( exp(s_{i,p(i)}) / sum_{k != i} exp(s_ik) ),   loss = mean_i l_i  (2N anchors)
    """
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = u @ u.T / temperature
    logits.fill_diagonal_(float("-inf"))  # exclude self-similarity
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z1.device)
    return F.cross_entropy(logits, targets)


@register
class SimCLR(Method):
    name = "simclr"
    views = [ViewSpec.simclr(), ViewSpec.simclr()]

    def __init__(self, backbone, proj_hidden_dim: int = 2048, proj_dim: int = 128,
                 temperature: float = 0.2):
        super().__init__(backbone)
        self.projector = projection_mlp(backbone.embed_dim, proj_hidden_dim, proj_dim)
        self.temperature = temperature

    def training_loss(self, views):
        h = self.backbone(torch.cat(views))  # one pass for both views (BN sees the 2N batch)
        z1, z2 = self.projector(h).chunk(2)
        return {"loss": nt_xent_loss(z1, z2, self.temperature), "embedding": h[: len(views[0])].detach()}
