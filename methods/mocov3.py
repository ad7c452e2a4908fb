"""MoCo v3 (Chen, Xie & He, 2021): contrast a query of one view with momentum-encoder keys of the other view.

    q_1, q_2 = r(g(f(v_1))), r(g(f(v_2)))        encoder f, projector g, predictor r (query side only)
    k_1, k_2 = g'(f'(v_1)), g'(f'(v_2))          momentum encoder (f', g') = EMA of (f, g), no gradient
    L        = mocov3_loss(q_1, k_2, tau) + mocov3_loss(q_2, k_1, tau)      (symmetrised)
    (f', g') <- m (f', g') + (1 - m) (f, g),  m by a cosine from ``ema`` (0.99) to 1 (methods.ema)

The keys of the batch are the negatives (no queue). Projector and predictor are 2-layer MLPs ending in a
BatchNorm without affine, as in the official ResNet code. ``temperature``: 0.2 as solo-learn's CIFAR ResNet-18
recipe (the official code uses 1.0 for ResNet-50 on ImageNet, 0.2 for ViTs). The probes evaluate f.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench import distributed
from bench.augment import ViewSpec
from methods import register
from methods.base import Method, projection_mlp
from methods.ema import EMATeacher


def mocov3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE of queries q (N, D) against keys k (N, D) (constant), scaled by 2 tau as the official code does:
    with u = q/|q|, w = k/|k| and s_ij = u_i . w_j / tau, query i's positive is key i, the other keys negatives:

        L = 2 tau * mean_i ( -log( exp(s_ii) / sum_j exp(s_ij) ) )

    Under DDP the keys of every rank are gathered (N = the global batch) and query i of rank r is matched with
    key r n + i."""
    u, w = F.normalize(q.float(), dim=1), F.normalize(k.detach().float(), dim=1)
    keys = distributed.gather(w)
    logits = u @ keys.T / temperature
    labels = torch.arange(len(u), device=u.device) + distributed.rank() * len(u)
    return 2 * temperature * F.cross_entropy(logits, labels)


@register
class MoCoV3(Method):
    name = "mocov3"
    # the BYOL asymmetric views the paper uses: blur 1.0 / 0.1, solarize 0.0 / 0.2
    views = [ViewSpec.byol(blur_p=1.0, solarize_p=0.0), ViewSpec.byol(blur_p=0.1, solarize_p=0.2)]

    def __init__(self, backbone, proj_hidden_dim: int = 4096, proj_dim: int = 256, pred_hidden_dim: int = 4096,
                 temperature: float = 0.2, ema: float = 0.99):
        super().__init__(backbone)
        self.projector = projection_mlp(backbone.embed_dim, proj_hidden_dim, proj_dim, last_bn=True)
        self.predictor = projection_mlp(proj_dim, pred_hidden_dim, proj_dim, last_bn=True)
        self.teacher = EMATeacher(nn.Sequential(backbone, self.projector), ema)
        self.temperature = temperature

    def training_loss(self, views):
        b = len(views[0])
        x = torch.cat(views)  # one pass for both views, query and key encoders
        h = self.backbone(x)
        q1, q2 = self.predictor(self.projector(h)).split(b)
        k1, k2 = self.teacher(x).split(b)
        loss = mocov3_loss(q1, k2, self.temperature) + mocov3_loss(q2, k1, self.temperature)
        return {"loss": loss, "embedding": h[:b].detach()}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.teacher.update(nn.Sequential(self.backbone, self.projector), step, total_steps)
