"""MAE: the loss by hand, patch order, random masks, encoder-on-visible wiring, and real in-painting."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from bench.backbones import create_backbone
from methods.mae import MAE, mae_loss, patchify
from methods.masks import sample_mae_masks


def test_mae_loss_by_hand():
    target = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]]])     # (B=1, N=2, P=4)
    pred = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    # patch 0: mean 2.5, unbiased var 5/3 -> t' = (-1.5, -0.5, 0.5, 1.5) / sqrt(5/3 + 1e-6); MSE to 0 = mean t'^2
    mse0 = (2 * 1.5 ** 2 + 2 * 0.5 ** 2) / 4 / (5 / 3 + 1e-6)                    # = 0.75
    # patch 1: constant -> t' = 0 (var 0 + eps); MSE to 1 = 1
    assert mae_loss(pred, target, torch.tensor([[1, 0]])).item() == pytest.approx(mse0, rel=1e-6)
    assert mae_loss(pred, target, torch.tensor([[1, 1]])).item() == pytest.approx((mse0 + 1.0) / 2, rel=1e-6)
    # raw pixels: patch 0 (1 + 4 + 9 + 16) / 4 = 7.5, patch 1 (4 * 16) / 4 = 16
    assert mae_loss(pred, target, torch.tensor([[1, 1]]), norm_pix=False).item() == pytest.approx((7.5 + 16) / 2)
    # what the decoder predicts at a visible patch never counts
    other = pred.clone()
    other[0, 1] = 100.0
    assert mae_loss(other, target, torch.tensor([[1, 0]])).item() == pytest.approx(mse0, rel=1e-6)


def test_patchify_follows_the_vit_token_order():
    x = torch.randn(2, 3, 8, 12)
    patches = patchify(x, 4)                                                     # grid 2 x 3
    assert patches.shape == (2, 6, 48)
    for i in range(6):
        r, c = divmod(i, 3)
        want = x[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].permute(0, 2, 3, 1).flatten(1)   # (p, p, C) flattened
        assert torch.equal(patches[:, i], want)


def test_mae_masks_hide_three_quarters_uniformly_at_random():
    g = torch.Generator().manual_seed(0)
    visible, mask = sample_mae_masks(64, 64, 0.75, g)
    assert visible.shape == (64, 16) and mask.shape == (64, 64)
    assert (mask.sum(1) == 48).all() and torch.equal(visible, visible.sort(1).values)
    assert not mask.gather(1, visible).any()                                     # visible and masked are disjoint
    assert len({tuple(v.tolist()) for v in visible}) == 64                       # each image its own mask
    freq = (~mask).float().mean(0)                                               # every patch visible ~25 % of the time
    assert freq.min() > 0.05 and freq.max() < 0.5
    again, _ = sample_mae_masks(64, 64, 0.75, torch.Generator().manual_seed(0))
    assert torch.equal(visible, again)
    with pytest.raises(ValueError, match="visible"):
        sample_mae_masks(2, 4, 0.9, g)


def _vit(size=32, depth=1):
    return create_backbone("vit_tiny", size, patch_size=4, depth=depth, class_token=False, global_pool="avg")


def test_mae_encoder_sees_the_visible_patches_only_and_the_decoder_predicts_pixels():
    torch.manual_seed(0)
    m = MAE(_vit(), decoder_depth=1)
    seen = []
    tokens = m.backbone.tokens
    m.backbone.tokens = lambda x, keep=None, **kw: seen.append(keep) or tokens(x, keep=keep, **kw)
    out = m.training_loss([torch.randn(4, 3, 32, 32)])
    assert seen[0].shape == (4, 16)                          # 25 % of the 8 x 8 patches enter the encoder
    assert m.decoder.out.out_features == 3 * 4 * 4
    out["loss"].backward()
    assert m.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert m.decoder.mask_token.grad.abs().sum() > 0
    assert m.encoder is m.backbone
    with pytest.raises(TypeError, match="ViT"):
        MAE(create_backbone("resnet18", 32))


@pytest.mark.slow
def test_mae_learns_to_inpaint_held_out_images(train_steps):
    """20 AdamW steps (~5 s) on 32 smooth images at 16 px: on 32 *other* images the masked-patch loss falls well
    below what predicting nothing scores (all zeros: mean t'^2 = 47/48 with per-patch normalised targets) and
    below the untrained decoder's."""
    torch.manual_seed(0)

    def smooth(seed):
        g = torch.Generator().manual_seed(seed)
        return F.interpolate(torch.rand(32, 3, 2, 2, generator=g) * 2 - 1, size=16, mode="bilinear",
                             align_corners=True)
    train, held = smooth(0), smooth(1)
    m = MAE(_vit(16, depth=2), decoder_depth=1)

    def held_out_loss():
        torch.manual_seed(123)  # the same masks every time
        with torch.no_grad():
            return m.training_loss([held])["loss"].item()
    _, mask = sample_mae_masks(32, 16, 0.75, None)
    nothing = mae_loss(torch.zeros(32, 16, 48), patchify(held, 4), mask).item()
    before = held_out_loss()
    train_steps(m, [train], 20)
    after = held_out_loss()
    assert nothing == pytest.approx(47 / 48, abs=0.01)
    assert after < 0.9 * nothing and after < 0.7 * before, (before, after, nothing)
    assert not math.isnan(after)
