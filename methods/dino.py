"""DINO (Caron et al., 2021): self-distillation with no labels.

A student sees all crops (2 global + N local), an EMA teacher only the global ones; the student
matches the teacher's centred, sharpened distribution over K prototypes on every pair of
*different* views. Teacher temperature warms up; the centre is an EMA of teacher batch means.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench import distributed
from bench.augment import ViewSpec
from methods import register
from methods.base import Method
from methods.ema import EMATeacher


def dino_loss(student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """With q_t = softmax((t - c) / tau_t) for each teacher (global) view t and
    log p_s = log_softmax(s / tau_s) for each student view s (teacher views are the first ones):

        L = mean over pairs (t, s), s != t, of  mean_batch( - sum_k q_t[k] log p_s[k] )
    """
    q = [F.softmax((t.float() - center) / teacher_temp, dim=-1).detach() for t in teacher_logits]
    log_p = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
    total, pairs = 0.0, 0
    for ti, qt in enumerate(q):
        for si, lp in enumerate(log_p):
            if si == ti:
                continue
            total = total + (-qt * lp).sum(-1).mean()
            pairs += 1
    return total / pairs


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
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
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


@register
class DINO(Method):
    name = "dino"
    # 2 global crops at the run's size, 4 local crops at half size (views[0] = first global crop)
    views = [ViewSpec.byol(blur_p=1.0, solarize_p=0.0, scale=(0.25, 1.0)),
             ViewSpec.byol(blur_p=0.1, solarize_p=0.2, scale=(0.25, 1.0))] + \
            [ViewSpec.byol(blur_p=0.5, solarize_p=0.0, scale=(0.05, 0.25), size_frac=0.5)] * 4

    def __init__(self, backbone, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_frac: float = 0.3, center_momentum: float = 0.9, ema: float = 0.996,
                 local_crops: int = 4, head_bn: bool = False, norm_last_layer: bool = True):
        super().__init__(backbone)
        if local_crops < 0:
            raise TypeError(f"local_crops must be >= 0, got {local_crops}")
        self.views = type(self).views[:2] + type(self).views[2:3] * local_crops
        self.head = DINOHead(backbone.embed_dim, out_dim, hidden_dim, bottleneck_dim, use_bn=head_bn,
                            norm_last_layer=norm_last_layer)
        self.teacher = EMATeacher(nn.Sequential(backbone, self.head), ema)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("progress", torch.zeros(()))  # fraction of training done (for schedules)
        self.student_temp, self.teacher_temp, self.warmup_teacher_temp = student_temp, teacher_temp, warmup_teacher_temp
        self.warmup_teacher_frac, self.center_momentum = warmup_teacher_frac, center_momentum

    def current_teacher_temp(self) -> float:
        """Linear warm-up from warmup_teacher_temp to teacher_temp over the first warmup_teacher_frac of training."""
        w = min(1.0, float(self.progress) / max(self.warmup_teacher_frac, 1e-8))
        return self.warmup_teacher_temp + w * (self.teacher_temp - self.warmup_teacher_temp)

    def training_loss(self, views):
        n_global, b = 2, len(views[0])
        teacher_out = self.teacher(torch.cat(views[:n_global])).chunk(n_global)
        # student: one backbone pass per resolution
        feats_global = self.backbone(torch.cat(views[:n_global]))
        feats = [feats_global] + ([self.backbone(torch.cat(views[n_global:]))] if len(views) > n_global else [])
        student_out = self.head(torch.cat(feats)).split(b)
        loss = dino_loss(list(student_out), list(teacher_out), self.center, self.student_temp,
                         self.current_teacher_temp())
        with torch.no_grad():
            # the mean over the global batch (all-reduced under DDP: every rank keeps the same centre)
            batch_center = distributed.all_reduce_mean(torch.cat(teacher_out).float().mean(0, keepdim=True))
            self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
        return {"loss": loss, "teacher_temp": torch.tensor(self.current_teacher_temp()),
                "embedding": feats_global[:b].detach()}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.teacher.update(nn.Sequential(self.backbone, self.head), step, total_steps)
        self.progress.fill_(step / max(1, total_steps))

    @property
    def encoder(self) -> nn.Module:
        return self.teacher.module[0]  # DINO evaluates the teacher backbone
