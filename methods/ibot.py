"""iBOT (Zhou et al., 2022; also in DINOv2): DINO plus masked-patch self-distillation.

With probability ``mask_prob`` a global view has round(r * N) of its N patches, r ~ U(``mask_ratio``), chosen at
random and replaced by a learned mask token - in the student's input only; the teacher sees the whole view. At
every masked patch i of image b the student's patch-head distribution p_bi matches the teacher's centred,
sharpened one q_bi = softmax((t_bi - C_p) / tau_t) at the same patch of the same view:

    L_patch = mean_b  (1 / |M_b|) sum_{i in M_b}  - sum_k q_bi[k] log p_bi[k]     (0 for an image with M_b empty)
    L = dino_loss + patch_loss_weight * L_patch  (+ koleo_weight * KoLeo, DINO's option: DINOv2 = all three)

The patch term has its own head (a ``DINOHead``), EMA teacher head and centre C_p (the mean over masked patches).
As in DINOv2 the heads score the masked patches only (the loss reads no other). It trains the patch tokens
themselves, which DINO's image-level objective leaves unconstrained, and those are what the attentive probe reads.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from methods import register
from methods.dino import DINO, DINOHead, centred_teacher_probs, update_center
from methods.ema import EMATeacher


def random_patch_mask(batch: int, n: int, prob: float, ratio: tuple[float, float], device=None) -> torch.Tensor:
    """(batch, n) bool: each image is masked with probability ``prob``; a masked image hides round(r * n)
    random patches, r ~ U(ratio) (iBOT's 'rand' mask; one vectorised draw for the batch)."""
    r = torch.empty(batch, 1, device=device).uniform_(*ratio)
    k = (r * n).round() * (torch.rand(batch, 1, device=device) < prob)
    ranks = torch.rand(batch, n, device=device).argsort(1).argsort(1)  # a random permutation rank per patch
    return ranks < k


def patch_rows(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: the patches the patch heads score - the masked ones, plus the first unmasked ones when fewer
    than 2 are masked (a BatchNorm head needs 2 rows; they get weight 0)."""
    masked = int(mask.sum())
    if masked >= 2:
        return mask
    rows = mask.clone().view(-1)
    rows[(~rows).nonzero()[:2 - masked].view(-1)] = True
    return rows.view_as(mask)


def patch_row_weights(mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(M,) weight of each scored row: 1 / (masked patches of its image) for a masked patch, 0 for padding."""
    return (mask.float() / mask.sum(1, keepdim=True).clamp(min=1.0))[rows]


def masked_patch_cross_entropy(student_logits: torch.Tensor, q: torch.Tensor, weights: torch.Tensor, batch: int,
                               student_temp: float = 0.1) -> torch.Tensor:
    """sum over rows of weight * ( - sum_k q[k] log softmax(s / tau_s)[k] ) / batch for teacher targets q (M, K):
    with ``patch_row_weights`` that is, per image, the mean over its masked patches, then the mean over the batch."""
    ce = -(q.detach() * F.log_softmax(student_logits.float() / student_temp, dim=-1)).sum(-1)   # (M,)
    return (ce * weights).sum() / batch


def patch_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor,
                            batch: int, center: torch.Tensor, student_temp: float = 0.1,
                            teacher_temp: float = 0.04) -> torch.Tensor:
    """L_patch above for the scored patch rows: logits (M, K), row weights (M,) from ``patch_row_weights``."""
    q = centred_teacher_probs(teacher_logits, center.reshape(1, -1), teacher_temp)
    return masked_patch_cross_entropy(student_logits, q, weights, batch, student_temp)


@register
class IBOT(DINO):
    name = "ibot"

    def __init__(self, backbone, patch_loss_weight: float = 1.0, mask_prob: float = 0.5, mask_ratio=(0.1, 0.5),
                 **dino_options):
        if not getattr(backbone, "is_vit", False):
            raise TypeError("ibot (masked patches) needs a ViT backbone")
        super().__init__(backbone, **dino_options)
        self.patch_loss_weight, self.mask_prob, self.mask_ratio = patch_loss_weight, mask_prob, tuple(mask_ratio)
        self.mask_token = nn.Parameter(torch.zeros(backbone.embed_dim))
        self.patch_head = DINOHead(backbone.embed_dim, **self.head_kwargs)
        self.patch_teacher = EMATeacher(self.patch_head, self.teacher.base_momentum)
        self.register_buffer("patch_center", torch.zeros(1, 1, self.head_kwargs["out_dim"]))

    def training_loss(self, views):
        globals_, tt = torch.cat(views[:2]), self.current_teacher_temp()
        with torch.no_grad():
            t_feats, t_patches = self.teacher.module[0].pooled_and_patches(globals_)
            teacher_out = self.teacher.module[1](t_feats)
        mask = random_patch_mask(len(globals_), t_patches.shape[1], self.mask_prob, self.mask_ratio, globals_.device)
        s_feats, s_patches = self.backbone.pooled_and_patches(globals_, mask=mask, mask_token=self.mask_token)
        out = self.image_loss(views, s_feats, teacher_out, tt)
        rows = patch_rows(mask)  # the heads score the masked patches only
        with torch.no_grad():
            teacher_patch = self.patch_teacher.module(t_patches[rows])                         # (M, K)
        patch_loss = patch_distillation_loss(self.patch_head(s_patches[rows]), teacher_patch,
                                             patch_row_weights(mask, rows), len(mask), self.patch_center,
                                             self.student_temp, tt)
        update_center(self.patch_center, teacher_patch[mask[rows]], self.center_momentum)
        out.update(loss=out["loss"] + self.patch_loss_weight * patch_loss, patch_loss=patch_loss.detach(),
                   dino_loss=out.get("dino_loss", out["loss"]).detach(), masked_frac=mask.float().mean())
        return out

    def on_step_end(self, step: int, total_steps: int) -> None:
        super().on_step_end(step, total_steps)
        self.patch_teacher.update(self.patch_head, step, total_steps)
