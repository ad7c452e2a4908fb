"""I-JEPA (Assran et al., 2023): predict the representations of masked image blocks from a context block.

For one view x with patch grid N: target blocks T_1..T_M and a context block C (targets removed),

    s_y = LN(f_teacher(x))[T_j]          (EMA target encoder over the full image, layer-normed)
    s_x = f_student(x[C])                (context encoder sees only context patches)
    L   = mean_j  || g(s_x, pos(T_j)) - s_y ||^2      (g: narrow ViT predictor with mask tokens)

Masks are drawn from torch's global RNG, which the trainer seeds at every step from (run seed, step, rank)
(``bench.trainer.step_seed``): two run seeds see different masks, and a run resumed at any step replays its own.

Optional (off by default): C-JEPA's (Mo & Tong, 2024) VICReg terms on the context tokens against dimensional
collapse, ``var_weight * v(s_x) + cov_weight * c(s_x)`` over all context tokens of the batch (methods.base.
variance_covariance).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.nn import functional as F

from bench.augment import ViewSpec
from bench.backbones import sincos_pos_embed
from methods import register
from methods.base import Method, variance_covariance
from methods.ema import EMATeacher
from methods.masks import sample_ijepa_masks


class Predictor(nn.Module):
    """Narrow ViT: context tokens + mask tokens (carrying target positions) -> predicted target tokens, of width
    ``out_dim`` (default: ``embed_dim``, the encoder's; MAE's decoder predicts pixels, out_dim = 3 p^2)."""

    def __init__(self, embed_dim: int, dim: int = 96, depth: int = 4, heads: int = 3, out_dim: int | None = None):
        super().__init__()
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim or embed_dim)
        self.dim = dim

    def forward(self, ctx: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor, pos: torch.Tensor):
        """ctx (B, Kc, D) at positions ctx_idx (B, Kc); tgt_idx (B, Kt); pos (N, dim) -> (B, Kt, D)."""
        x = self.embed(ctx) + pos[ctx_idx]
        m = self.mask_token.expand(len(tgt_idx), tgt_idx.shape[1], -1) + pos[tgt_idx]
        x = torch.cat([x, m], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.out(self.norm(x[:, ctx.shape[1]:]))


@register
class IJEPA(Method):
    name = "ijepa"
    # one view: a resized crop only (no colour augmentation), as in the paper
    views = [ViewSpec(scale=(0.3, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)]

    def __init__(self, backbone, pred_dim: int = 96, pred_depth: int = 4, pred_heads: int = 3, num_targets: int = 4,
                 target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0),
                 ema: float = 0.996, loss: str = "l2", var_weight: float = 0.0,
                 cov_weight: float = 0.0):
        super().__init__(backbone)
        if not getattr(backbone, "is_vit", False):
            raise TypeError("I-JEPA needs a ViT backbone (it drops masked patch tokens)")
        if loss not in ("l2", "smooth_l1", "l1"):
            raise TypeError(f"loss must be 'l2', 'smooth_l1' or 'l1', got {loss!r}")
        self.predictor = Predictor(backbone.embed_dim, pred_dim, pred_depth, pred_heads)
        self.teacher = EMATeacher(backbone, ema)
        self.mask_kw = dict(num_targets=num_targets, target_scale=tuple(target_scale),
                            target_aspect=tuple(target_aspect), context_scale=tuple(context_scale))
        self.loss_kind = loss
        self.var_weight, self.cov_weight = float(var_weight), float(cov_weight)
        self.patch = getattr(backbone, "patch", None) or backbone.model.patch_embed.patch_size[0]

    def target_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The EMA target encoder's layer-normed patch tokens of the whole input, and from the same pass its
        pooled feature ``encoder(x)`` - the harness's online probe and collapse monitors read that as the
        ``embedding``, so it needs no extra encoder pass (no gradient)."""
        with torch.no_grad():
            pooled, h = self.teacher.module.pooled_and_patches(x)
            return F.layer_norm(h, h.shape[-1:]), pooled

    def regression_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()  # the loss in fp32 under autocast
        if self.loss_kind == "l1":
            return F.l1_loss(pred, target)
        return F.mse_loss(pred, target) if self.loss_kind == "l2" else F.smooth_l1_loss(pred, target)

    def anti_collapse(self, ctx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``var_weight * v + cov_weight * c`` of context tokens (N, D) (0 when both weights are 0) and the
        detached v, c for the logs."""
        if not (self.var_weight or self.cov_weight):
            return ctx.new_zeros(()), {}
        v, c = variance_covariance(ctx)
        return self.var_weight * v + self.cov_weight * c, {"variance": v.detach(), "covariance": c.detach()}

    def training_loss(self, views):
        x = views[0]
        b, gh, gw = len(x), x.shape[-2] // self.patch, x.shape[-1] // self.patch
        ctx_idx, tgt_idx = sample_ijepa_masks(b, (gh, gw), None, **self.mask_kw)
        ctx_idx, tgt_idx = ctx_idx.to(x.device), tgt_idx.to(x.device)
        j, kt = tgt_idx.shape[1], tgt_idx.shape[2]
        h, pooled = self.target_tokens(x)
        target = torch.gather(h, 1, tgt_idx.flatten(1).unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        target = target.view(b * j, kt, -1)  # block j of image i at row i*j + j
        ctx = self.backbone.tokens(x, keep=ctx_idx)
        pos = sincos_pos_embed(self.predictor.dim, (gh, gw)).to(x.device)
        pred = self.predictor(ctx.repeat_interleave(j, 0), ctx_idx.repeat_interleave(j, 0), tgt_idx.flatten(0, 1), pos)
        penalty, terms = self.anti_collapse(ctx.flatten(0, 1))
        return {"loss": self.regression_loss(pred, target) + penalty, **terms,
                "context_tokens": torch.tensor(float(ctx_idx.shape[1])), "embedding": pooled}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.teacher.update(self.backbone, step, total_steps)

    @property
    def encoder(self) -> nn.Module:
        return self.teacher.module  # the target encoder is the one I-JEPA evaluates
