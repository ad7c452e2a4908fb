"""SimCLR (Chen et al., 2020): contrast two augmented views of each image against the batch."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from bench import distributed
from bench.augment import ViewSpec
from methods import register
from methods.base import Method, projection_mlp


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalised-temperature cross-entropy over the 2N views.

    With u = z / ||z|| for all 2N embeddings and s_ij = u_i . u_j / tau, anchor i's positive is
    its other view p(i):

        l_i = -log( exp(s_{i,p(i)}) / sum_{k != i} exp(s_ik) ),   loss = mean_i l_i  (2N anchors)

    Under DDP (world size W, N = W n) each rank's 2n anchors are contrasted with the 2N gathered
    embeddings and the mean is over its own anchors: DDP's gradient averaging then optimises the
    mean over all 2N anchors, as one process holding the global batch would.
    """
    n = z1.shape[0]
    u1, u2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    keys = torch.cat([distributed.gather(u1), distributed.gather(u2)])  # (2N, d); (2n, d) alone
    offset, big_n = distributed.rank() * n, len(keys) // 2
    logits = torch.cat([u1, u2]) @ keys.T / temperature
    local = torch.arange(n, device=z1.device)
    self_idx = torch.cat([offset + local, big_n + offset + local])
    logits[torch.arange(2 * n, device=z1.device), self_idx] = float("-inf")  # exclude self-similarity
    targets = torch.cat([big_n + offset + local, offset + local])
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
