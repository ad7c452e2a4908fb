"""V-JEPA (Bardes et al., 2024): I-JEPA on clips. What differs from ``methods/ijepa.py``:

- a video ViT (tubelet embedding, 3-D positions) and one clip view (same crop on every frame);
- 3-D multi-block masks: spatial blocks masked through *all* frames (``sample_vjepa_masks``), two
  mask families per clip - short-range (8 blocks, scale 0.15) and long-range (2 blocks, scale 0.7) by
  default (``short_range`` / ``long_range`` = (blocks, scale) for small token grids);
- masks come from the trainer's per-step seed, as in I-JEPA;
- the predictor regresses all masked tokens of a family at once, with an L1 loss:

    L = mean over families f of | g(f_student(x[C_f]), pos(T_f)) - LN(f_teacher(x))[T_f] |_1
"""

from __future__ import annotations

import torch

from bench.augment import ViewSpec
from bench.backbones import sincos_pos_embed
from methods import register
from methods.ijepa import IJEPA
from methods.masks import sample_vjepa_masks

#: the paper's two mask families on a 8 x 14 x 14 token grid: (number of blocks, spatial scale of each)
SHORT_RANGE, LONG_RANGE = (8, 0.15), (2, 0.7)


@register
class VJEPA(IJEPA):
    name = "vjepa"
    views = [ViewSpec(scale=(0.3, 1.0), jitter_p=0.0, gray_p=0.0)]

    def __init__(self, backbone, pred_dim: int = 96, pred_depth: int = 4, pred_heads: int = 3,
                 aspect=(0.75, 1.5), ema: float = 0.996, loss: str = "l1",
                 short_range=SHORT_RANGE, long_range=LONG_RANGE, var_weight: float = 0.0, cov_weight: float = 0.0):
        if not hasattr(backbone, "grid"):
            raise TypeError("V-JEPA needs a video backbone (e.g. video_vit_tiny) taking clips (B, T, 3, H, W)")
        super().__init__(backbone, pred_dim, pred_depth, pred_heads, ema=ema, loss=loss,
                         var_weight=var_weight, cov_weight=cov_weight)
        self.aspect = tuple(aspect)
        self.families = [{"num_blocks": int(n), "scale": (float(sc), float(sc))} for n, sc in (short_range, long_range)]

    def training_loss(self, views):
        x = views[0]
        grid = self.backbone.grid(x)
        h, pooled = self.target_tokens(x)
        pos = sincos_pos_embed(self.predictor.dim, grid).to(x.device)
        losses, contexts = [], []
        for family in self.families:
            ctx_idx, tgt_idx = (i.to(x.device) for i in sample_vjepa_masks(
                len(x), grid, None, aspect=self.aspect, **family))
            target = torch.gather(h, 1, tgt_idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
            contexts.append(self.backbone.tokens(x, keep=ctx_idx))
            losses.append(self.regression_loss(self.predictor(contexts[-1], ctx_idx, tgt_idx, pos), target))
        penalty, terms = self.anti_collapse(torch.cat([c.flatten(0, 1) for c in contexts]))
        return {"loss": torch.stack(losses).mean() + penalty, **terms, "short_range": losses[0].detach(),
                "long_range": losses[1].detach(), "embedding": pooled}
