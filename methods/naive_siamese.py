"""naive-siamese: the baseline that *should* collapse (Chen & He, 2021, SimSiam ablations).

Two views, MSE between their encoder embeddings, no negatives, no stop-gradient, no predictor, no
projector:
mapping every image to one constant point is a global minimum, and training finds it. It exists to
show the collapse monitors (feature std, effective rank) firing.

    L = mean_i || h1_i - h2_i ||^2 / D
"""

from __future__ import annotations

from torch.nn import functional as F

from bench.augment import ViewSpec
from methods import register
from methods.base import Method


@register
class NaiveSiamese(Method):
    name = "naive-siamese"
    views = [ViewSpec.simclr(), ViewSpec.simclr()]

    def training_loss(self, views):
        h1, h2 = self.backbone(views[0]), self.backbone(views[1])
        return {"loss": F.mse_loss(h1, h2), "embedding": h1.detach()}
