"""DINO (Caron et al., 2021): self-distillation with no labels. The paper's Algorithm 1:

    gt = copy(gs)                                  # teacher: the student's backbone + DINOHead, never trained
    for x in loader:
        crops = 2 global + local_crops local views # multi-crop; the teacher sees the 2 global ones only
        s, t = gs(crops), gt(global crops)         # logits over K prototypes
        loss = dino_loss(s, t, C, tau_s, tau_t)    # student matches the centred, sharpened teacher
        loss.backward(); update(gs)
        gt = m * gt + (1 - m) * gs                 # EMA teacher (methods.ema), m by a cosine from `ema` to 1
        C = c * C + (1 - c) * mean(t)              # centre, c = center_momentum

The teacher temperature warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over the first
``warmup_teacher_frac`` of training; the probes evaluate the teacher backbone. ``freeze_last_layer`` (a fraction of
training; the paper freezes the first epoch) drops the prototype layer's gradient early on. ``koleo_weight > 0``
adds DINOv2's KoLeo term (``methods.losses.koleo_loss``) on the student's backbone features of each global view.
``global_crops_scale`` / ``local_crops_scale`` are the crops' area ranges (the paper's (0.4, 1) and (0.05, 0.4);
here (0.25, 1) and (0.05, 0.25)); ``blur=False`` drops the Gaussian blur, ``view_overrides`` sets any other
ViewSpec field on every view. iBOT's masked-patch term on top of this: ``methods/ibot.py``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from bench import distributed
from bench.augment import ViewSpec
from methods import register
from methods.base import Method
from methods.ema import EMATeacher
from methods.losses import koleo_loss


def centred_teacher_probs(teacher_logits: torch.Tensor, center: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """q = softmax((t - c) / tau_t) over the prototypes (last axis), in fp32; ``center`` broadcasts against t."""
    return F.softmax((teacher_logits.float() - center) / teacher_temp, dim=-1)


def dino_loss(student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """With q_t = softmax((t - c) / tau_t) for each teacher (global) view t and
    log p_s = log_softmax(s / tau_s) for each student view s (teacher views are the first ones):

        L = mean over pairs (t, s), s != t, of  mean_batch( - sum_k q_t[k] log p_s[k] )
    """
    q = [centred_teacher_probs(t, center, teacher_temp).detach() for t in teacher_logits]
    log_p = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
    pairs = [(-qt * lp).sum(-1).mean() for ti, qt in enumerate(q) for si, lp in enumerate(log_p) if si != ti]
    return sum(pairs) / len(pairs)


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9) -> None:
    """In place: C <- m * C + (1 - m) * mean of the teacher logits (rows) over the global batch (sums and counts
    all-reduced under DDP, so ranks may hold different numbers of rows); no rows anywhere leaves C as it is."""
    logits = teacher_logits.float()
    sum_count = distributed.all_reduce_mean(torch.cat([logits.sum(0), logits.new_tensor([len(logits)])]))
    batch_center = (sum_count[:-1] / sum_count[-1].clamp(min=1.0)).view_as(center)
    moved = center * momentum + batch_center * (1 - momentum)
    center.copy_(torch.where(sum_count[-1] > 0, moved, center))  # no host sync


class DINOHead(nn.Module):
    """MLP (GELU, optional BatchNorm) -> bottleneck -> L2-normalise -> weight-normalised linear to K
    prototypes; ``norm_last_layer`` fixes the weight-norm gain g to 1 (the paper's default for ViTs)."""

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True):
        super().__init__()
        layers, dim = [], in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU()]
            dim = hidden_dim
        self.mlp = nn.Sequential(*layers, nn.Linear(dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        g.data.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


GLOBAL_CROPS_SCALE, LOCAL_CROPS_SCALE = (0.25, 1.0), (0.05, 0.25)  # the crops' area ranges (DINO's arguments)


@register
class DINO(Method):
    name = "dino"
    # 2 global crops at the run's size, local crops at half size (views[0] = first global crop)
    views = [ViewSpec.byol(blur_p=1.0, solarize_p=0.0, scale=GLOBAL_CROPS_SCALE),
             ViewSpec.byol(blur_p=0.1, solarize_p=0.2, scale=GLOBAL_CROPS_SCALE)] + \
            [ViewSpec.byol(blur_p=0.5, solarize_p=0.0, scale=LOCAL_CROPS_SCALE, size_frac=0.5)] * 4

    def __init__(self, backbone, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_frac: float = 0.3, center_momentum: float = 0.9, ema: float = 0.996,
                 local_crops: int = 4, head_bn: bool = False, norm_last_layer: bool = True,
                 freeze_last_layer: float = 0.0, koleo_weight: float = 0.0, global_crops_scale=GLOBAL_CROPS_SCALE,
                 local_crops_scale=LOCAL_CROPS_SCALE, blur: bool = True, view_overrides: dict | None = None):
        super().__init__(backbone)
        if local_crops < 0:
            raise TypeError(f"local_crops must be >= 0, got {local_crops}")
        if not 0.0 <= freeze_last_layer < 1.0:
            raise TypeError(f"freeze_last_layer must be a fraction of training in [0, 1), got {freeze_last_layer}")
        for key, value in (("global_crops_scale", global_crops_scale), ("local_crops_scale", local_crops_scale)):
            if not isinstance(value, (list, tuple)) or len(value) != 2 or not 0.0 < value[0] <= value[1] <= 1.0:
                raise TypeError(f"{key} must be (low, high) with 0 < low <= high <= 1, got {value!r}")
        views = [replace(v, scale=tuple(global_crops_scale)) for v in type(self).views[:2]] + \
            [replace(type(self).views[2], scale=tuple(local_crops_scale))] * local_crops
        overrides = {**({} if blur else {"blur_p": 0.0}), **(view_overrides or {})}
        self.views = [v.with_overrides(overrides) for v in views]
        self.head_kwargs = dict(out_dim=out_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim, use_bn=head_bn,
                                norm_last_layer=norm_last_layer)  # iBOT's patch head is another one of these
        self.head = DINOHead(backbone.embed_dim, **self.head_kwargs)
        self.teacher = EMATeacher(nn.Sequential(backbone, self.head), ema)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("progress", torch.zeros(()))  # fraction of training done (for schedules)
        self.student_temp, self.teacher_temp, self.warmup_teacher_temp = student_temp, teacher_temp, warmup_teacher_temp
        self.warmup_teacher_frac, self.center_momentum = warmup_teacher_frac, center_momentum
        self.freeze_last_layer, self.koleo_weight = freeze_last_layer, koleo_weight

    def current_teacher_temp(self) -> float:
        """Linear warm-up from warmup_teacher_temp to teacher_temp over the first warmup_teacher_frac of training."""
        w = min(1.0, float(self.progress) / max(self.warmup_teacher_frac, 1e-8))
        return self.warmup_teacher_temp + w * (self.teacher_temp - self.warmup_teacher_temp)

    def training_loss(self, views):
        globals_ = torch.cat(views[:2])
        with torch.no_grad():
            teacher_out = self.teacher.module(globals_)
        return self.image_loss(views, self.backbone(globals_), teacher_out, self.current_teacher_temp())

    def image_loss(self, views, feats_global: torch.Tensor, teacher_out: torch.Tensor, tt: float) -> dict:
        """DINO's terms given the student's backbone features of the 2 global views (2B, D) and the teacher's
        logits of them (2B, K): the local views go through the student here, one pass for all of them."""
        b = len(views[0])
        feats = [feats_global] + ([self.backbone(torch.cat(views[2:]))] if len(views) > 2 else [])
        student_out = list(self.head(torch.cat(feats)).split(b))
        loss = dino_loss(student_out, list(teacher_out.chunk(2)), self.center, self.student_temp, tt)
        update_center(self.center, teacher_out, self.center_momentum)
        out = {"loss": loss, "teacher_temp": torch.tensor(tt), "embedding": feats_global[:b].detach()}
        if self.koleo_weight > 0:
            koleo = sum(koleo_loss(f) for f in feats_global.chunk(2))
            out.update(loss=loss + self.koleo_weight * koleo, koleo=koleo.detach(), dino_loss=loss.detach())
        return out

    def on_after_backward(self) -> None:
        """DINO's ``cancel_gradients_last_layer``: over the first ``freeze_last_layer`` of training the prototype
        layers of every head get no gradient (None: the optimiser skips them, weight decay included)."""
        if not self.freeze_last_layer or float(self.progress) >= self.freeze_last_layer:  # off: no host sync
            return
        for head in (m for m in self.modules() if isinstance(m, DINOHead)):
            for p in head.last_layer.parameters():
                p.grad = None

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.teacher.update(nn.Sequential(self.backbone, self.head), step, total_steps)
        self.progress.fill_(step / max(1, total_steps))

    @property
    def encoder(self) -> nn.Module:
        return self.teacher.module[0]  # DINO evaluates the teacher backbone
