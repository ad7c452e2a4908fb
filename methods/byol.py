"""BYOL (Grill et al., 2020): predict an EMA target network's projection of another view of the same image.

    z_1, z_2   = g(f(v_1)), g(f(v_2))              online encoder f + projector g
    p_1, p_2   = q(z_1), q(z_2)                     online predictor q
    z'_1, z'_2 = g'(f'(v_1)), g'(f'(v_2))           target (f', g') = EMA of (f, g), no gradient
    L          = byol_loss(p_1, z'_2) + byol_loss(p_2, z'_1)      (symmetrised, the paper's L + L~)
    (f', g')  <- m (f', g') + (1 - m) (f, g),   m by a cosine from ``ema`` (0.996) to 1 (methods.ema)

No negatives: the predictor and the slowly moving target keep it from collapsing. The probes evaluate the
online encoder f, as the paper does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.augment import ViewSpec
from methods import register
from methods.base import Method, projection_mlp
from methods.ema import EMATeacher


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Normalised MSE between predictions p (N, D) and targets z (N, D), z taken as constant:

        l_i = || p_i/|p_i| - z_i/|z_i| ||^2 = 2 - 2 cos(p_i, z_i),   loss = mean_i l_i
    """
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=-1)).mean()


@register
class BYOL(Method):
    name = "byol"
    # the paper's asymmetric views: blur 1.0 / 0.1, solarize 0.0 / 0.2
    views = [ViewSpec.byol(blur_p=1.0, solarize_p=0.0), ViewSpec.byol(blur_p=0.1, solarize_p=0.2)]

    def __init__(self, backbone, proj_hidden_dim: int = 4096, proj_dim: int = 256, pred_hidden_dim: int = 4096,
                 ema: float = 0.996):
        super().__init__(backbone)
        self.projector = projection_mlp(backbone.embed_dim, proj_hidden_dim, proj_dim)
        self.predictor = projection_mlp(proj_dim, pred_hidden_dim, proj_dim)
        self.teacher = EMATeacher(nn.Sequential(backbone, self.projector), ema)

    def training_loss(self, views):
        b = len(views[0])
        x = torch.cat(views)  # one pass for both views, online and target
        h = self.backbone(x)
        p1, p2 = self.predictor(self.projector(h)).split(b)
        z1, z2 = self.teacher(x).split(b)
        return {"loss": byol_loss(p1, z2) + byol_loss(p2, z1), "embedding": h[:b].detach()}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.teacher.update(nn.Sequential(self.backbone, self.projector), step, total_steps)
