"""MAE (He et al., 2022): reconstruct the pixels of randomly masked patches from the visible ones.

For one view x cut into N patches x_1..x_N (each p x p x 3 values, flattened), a random mask M hides
int(N * mask_ratio) of them (75 %); the encoder sees only the visible patches, a light decoder gets their
tokens plus a mask token at every hidden position (its own fixed sine-cosine position embeddings) and
predicts every hidden patch's pixels:

    h   = f(x[V])                              (ViT encoder on the visible patches V only)
    x^  = g(h, pos(V), pos(M))                 (decoder: narrow ViT, mask tokens at M -> (|M|, 3 p^2))
    L   = mae_loss(x^, patchify(x), M)         (MSE on per-patch normalised pixels of the masked patches)

The decoder is ``methods.ijepa.Predictor`` with a pixel output (full attention is blind to token order, so
"context tokens then mask tokens" is MAE's unshuffled sequence). Masks are drawn from torch's global RNG,
which the trainer seeds at every step from (run seed, step, rank), as in I-JEPA. The probes evaluate the
encoder itself (no EMA copy); its pooled feature of the whole image feeds the online probe.
"""

from __future__ import annotations

import torch

from bench.augment import ViewSpec
from bench.backbones import sincos_pos_embed
from methods import register
from methods.base import Method
from methods.ijepa import Predictor
from methods.masks import sample_mae_masks


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C): patches in the ViT's token order (row-major), each flattened (p, p, C)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def mae_loss(pred: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True,
             eps: float = 1e-6) -> torch.Tensor:
    """pred, target_patches (B, N, P); mask (B, N), 1 where the patch was hidden. With ``norm_pix`` each target
    patch t (P values) is standardised by its own mean and variance (unbiased, as the official code):
    t' = (t - mean(t)) / sqrt(var(t) + eps); then

        L = sum_{b,i} M_bi * mean_j (pred_bij - t'_bij)^2  /  sum_{b,i} M_bi

    (the mean squared error per patch, averaged over the masked patches only)."""
    pred, target = pred.float(), target_patches.float()
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + eps).sqrt()
    per_patch = (pred - target).pow(2).mean(-1)
    mask = mask.float()
    return (per_patch * mask).sum() / mask.sum()


@register
class MAE(Method):
    name = "mae"
    # one view: a resized crop and a flip, no colour augmentation (the paper's)
    views = [ViewSpec(scale=(0.2, 1.0), jitter_p=0.0, gray_p=0.0)]

    def __init__(self, backbone, mask_ratio: float = 0.75, decoder_dim: int = 96, decoder_depth: int = 2,
                 decoder_heads: int = 3, norm_pix: bool = True):
        super().__init__(backbone)
        if not getattr(backbone, "is_vit", False):
            raise TypeError("MAE needs a ViT backbone (its encoder sees only the visible patches)")
        if not 0.0 < mask_ratio < 1.0:
            raise TypeError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.patch = backbone.model.patch_embed.patch_size[0]
        self.decoder = Predictor(backbone.embed_dim, decoder_dim, decoder_depth, decoder_heads,
                                 out_dim=3 * self.patch ** 2)
        self.mask_ratio, self.norm_pix = float(mask_ratio), bool(norm_pix)

    def training_loss(self, views):
        x = views[0]
        b, gh, gw = len(x), x.shape[-2] // self.patch, x.shape[-1] // self.patch
        visible, mask = (t.to(x.device) for t in sample_mae_masks(b, gh * gw, self.mask_ratio, None))
        hidden = torch.nonzero(mask)[:, 1].view(b, -1)          # (B, |M|) sorted indices of the hidden patches
        pos = sincos_pos_embed(self.decoder.dim, (gh, gw)).to(x.device)
        pred_hidden = self.decoder(self.backbone.tokens(x, keep=visible), visible, hidden, pos)
        pred = pred_hidden.new_zeros(b, gh * gw, pred_hidden.shape[-1])
        pred = pred.scatter(1, hidden.unsqueeze(-1).expand_as(pred_hidden), pred_hidden)  # (B, N, P); 0 where seen
        return {"loss": mae_loss(pred, patchify(x, self.patch), mask, self.norm_pix),
                "visible_tokens": torch.tensor(float(visible.shape[1]))}
