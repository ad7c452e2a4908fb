"""naive-siamese: the baseline that *should* collapse (Chen & He, 2021, SimSiam ablations).

Two views, MSE between their L2-normalised projected embeddings (BYOL's form of the loss), no
negatives, no stop-gradient, no predictor: mapping every image to one direction is a global minimum,
and training finds it (normalising keeps the trivial escape of shrinking z to 0 closed). It exists to
show the collapse monitors (feature std, effective rank) firing.

    L = mean_i || z1_i/|z1_i| - z2_i/|z2_i| ||^2 = 2 - 2 mean_i cos(z1_i, z2_i),   z = projector(encoder(x))

As in SimSiam's study, collapse is watched on the projector output z (``"monitor"``): the
encoder's BatchNorm keeps its own features spread long after z has become constant.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from bench.augment import ViewSpec
from methods import register
from methods.base import Method


@register
class NaiveSiamese(Method):
    name = "naive-siamese"
    views = [ViewSpec.simclr(), ViewSpec.simclr()]

    def __init__(self, backbone, proj_hidden_dim: int = 512, proj_dim: int = 128):
        super().__init__(backbone)
        # no BatchNorm in the projector: BN's batch statistics act as an implicit contrastive term
        self.projector = nn.Sequential(nn.Linear(backbone.embed_dim, proj_hidden_dim), nn.ReLU(inplace=True),
                                       nn.Linear(proj_hidden_dim, proj_dim))

    def training_loss(self, views):
        h1, h2 = self.backbone(views[0]), self.backbone(views[1])
        z1, z2 = self.projector(h1), self.projector(h2)
        return {"loss": (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).pow(2).sum(1).mean(), "embedding": h1.detach(), "monitor": z1.detach()}
