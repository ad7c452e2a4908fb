"""I-JEPA: mask invariants (shapes, scales, disjointness), predictor wiring, EMA target encoder."""

from __future__ import annotations

import math

import pytest
import torch

from methods.masks import block_masks, block_size, sample_ijepa_masks


@pytest.mark.parametrize("grid", [(8, 8), (14, 14), (6, 10)])
def test_ijepa_masks_invariants(grid):
    g = torch.Generator().manual_seed(0)
    n = grid[0] * grid[1]
    for _ in range(20):
        ctx, tgt = sample_ijepa_masks(16, grid, g)
        b, j, kt = tgt.shape
        assert (b, j) == (16, 4) and ctx.shape[0] == 16
        assert 0.08 * n <= kt <= 0.3 * n  # ~ scale 0.15-0.2 after rounding to whole patches
        for i in range(16):
            c, t = set(ctx[i].tolist()), set(tgt[i].flatten().tolist())
            assert not c & t, "context and targets must be disjoint"
            assert len(c) == ctx.shape[1] and max(c | t) < n
        assert torch.equal(ctx, ctx.sort(1).values)


def test_blocks_are_rectangles_of_the_sampled_size():
    g = torch.Generator().manual_seed(1)
    h, w = block_size((8, 8), (0.15, 0.2), (0.75, 1.5), g)
    assert 0.75 / 1.5 <= h / w <= 1.5 * 1.5 and 6 <= h * w <= 16
    masks = block_masks(5, (8, 8), 3, (h, w), g).view(5, 3, 8, 8)
    for m in masks.flatten(0, 1):
        rows, cols = m.nonzero(as_tuple=True)
        assert m.sum() == h * w and rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w


def test_ijepa_step_trains_context_encoder_and_predictor_only():
    from bench.backbones import create_backbone
    from methods.ijepa import IJEPA
    m = IJEPA(create_backbone("vit_tiny", 32, patch_size=8, class_token=False, global_pool="avg"), pred_depth=1)
    x = torch.randn(4, 3, 32, 32)
    out = m.training_loss([x])
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    assert m.backbone.model.blocks[0].attn.qkv.weight.grad is not None
    assert m.predictor.mask_token.grad is not None
    assert all(p.grad is None for p in m.teacher.parameters())
    assert m.encoder is m.teacher.module
    with pytest.raises(TypeError, match="ViT"):
        IJEPA(create_backbone("resnet18", 32))


@pytest.mark.parametrize("kind", ["image", "image_cls", "video"])
def test_jepa_embedding_is_the_encoders_feature_from_the_target_pass(kind):
    """I-JEPA / V-JEPA hand the harness encoder(x) from the target encoder's pass (no extra forward): it must
    equal what the encoder itself returns, [CLS] readout and video mean-pooling included."""
    from bench.backbones import create_backbone
    from methods.ijepa import IJEPA
    from methods.vjepa import VJEPA
    torch.manual_seed(0)
    if kind == "video":
        m, x = VJEPA(create_backbone("video_vit_tiny", 16, patch_size=8, tubelet=2, depth=2), pred_depth=1), \
            torch.randn(3, 4, 3, 16, 16)
    else:
        cls = kind == "image_cls"
        m = IJEPA(create_backbone("vit_tiny", 32, patch_size=8, depth=2, class_token=cls,
                                  global_pool="token" if cls else "avg"), pred_depth=1)
        x = torch.randn(3, 3, 32, 32)
    out = m.training_loss([x])
    with torch.no_grad():
        want = m.encoder(x)
    assert out["embedding"].shape == want.shape and not out["embedding"].requires_grad
    assert torch.allclose(out["embedding"], want, atol=1e-6)


def test_variance_covariance_terms_by_hand():
    from methods.base import variance_covariance
    z = 0.3 * torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])  # per column: Var = 0.09 * 5/3 = 0.15
    v, c = variance_covariance(z)
    assert v.item() == pytest.approx(1 - math.sqrt(0.15 + 1e-4), rel=1e-6)  # both columns' std 0.387 < 1
    assert c.item() == pytest.approx(2 * 0.15 ** 2 / 2, rel=1e-6)          # Cov_01 = Cov_10 = 0.15, D = 2


@pytest.mark.parametrize("video", [False, True])
def test_jepa_anti_collapse_terms_add_to_the_loss_and_are_off_by_default(video):
    from bench.backbones import create_backbone
    from methods.ijepa import IJEPA
    from methods.vjepa import VJEPA

    def make(**kw):
        torch.manual_seed(0)
        if video:
            return VJEPA(create_backbone("video_vit_tiny", 16, patch_size=8, tubelet=2, depth=1), pred_depth=1, **kw)
        return IJEPA(create_backbone("vit_tiny", 32, patch_size=8, depth=1, class_token=False, global_pool="avg"),
                     pred_depth=1, **kw)
    x = torch.randn(4, 4, 3, 16, 16) if video else torch.randn(4, 3, 32, 32)
    plain, reg = make(), make(var_weight=2.0, cov_weight=0.5)  # same weights

    def loss(method):
        torch.manual_seed(1)  # the same masks for both (drawn from the global RNG, as the trainer seeds it)
        return method.training_loss([x])
    out0, out1 = loss(plain), loss(reg)
    assert "variance" not in out0 and out1["variance"] > 0 and out1["covariance"] > 0
    extra = out1["loss"] - out0["loss"]
    assert extra.item() == pytest.approx((2.0 * out1["variance"] + 0.5 * out1["covariance"]).item(), rel=1e-4)
    penalty, _ = reg.anti_collapse(reg.backbone.tokens(x).flatten(0, 1))
    penalty.backward()  # the penalty trains the (context) encoder, never the teacher
    assert reg.backbone.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in reg.teacher.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ijepa", "vjepa", "mae"])
def test_masks_follow_the_run_seed(kind, tmp_path, monkeypatch):
    """The trainer seeds every step from (run seed, step): the same run seed replays the same masks, another run
    seed draws other masks (before, every run seed shared one mask sequence). I-JEPA, V-JEPA and MAE alike."""
    import methods.ijepa
    import methods.mae
    import methods.vjepa
    from bench.config import TrainConfig
    from bench.trainer import fit
    from methods.ijepa import IJEPA
    from methods.mae import MAE
    from methods.vjepa import VJEPA
    from bench.backbones import create_backbone

    video = kind == "vjepa"
    module = {"ijepa": methods.ijepa, "vjepa": methods.vjepa, "mae": methods.mae}[kind]
    name = {"ijepa": "sample_ijepa_masks", "vjepa": "sample_vjepa_masks", "mae": "sample_mae_masks"}[kind]
    drawn: list[torch.Tensor] = []
    real = getattr(module, name)

    def recording(*args, **kw):
        first, second = real(*args, **kw)  # (context, targets) or MAE's (visible, mask)
        drawn.append(second.clone())
        return first, second
    monkeypatch.setattr(module, name, recording)
    g = torch.Generator().manual_seed(0)
    shape = (16, 4, 3, 16, 16) if video else (16, 3, 32, 32)
    images, labels = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8), torch.arange(16) % 2

    def masks_of(seed: int) -> list[torch.Tensor]:
        drawn.clear()
        torch.manual_seed(0)
        if video:
            backbone = create_backbone("video_vit_tiny", 16, patch_size=8, tubelet=2, depth=1)
            method = VJEPA(backbone, pred_depth=1, short_range=(2, 0.15), long_range=(1, 0.5))
        else:
            backbone = create_backbone("vit_tiny", 32, patch_size=8, depth=1, class_token=False, global_pool="avg")
            method = IJEPA(backbone, pred_depth=1) if kind == "ijepa" else MAE(backbone, decoder_depth=1)
        cfg = TrainConfig(method=method.name, backbone="video_vit_tiny" if video else "vit_tiny",
                          img_size=16 if video else 32, epochs=1, batch_size=8, optimizer="adamw", lr=1e-4,
                          seed=seed, precision="32-true", online_probe=False)
        fit(method, images, labels, cfg, tmp_path / f"s{seed}-{len(list(tmp_path.iterdir()))}", num_classes=2,
            progress=False)
        return list(drawn)

    first, again, other = masks_of(0), masks_of(0), masks_of(1)
    assert len(first) == len(other) >= 2  # 2 steps (x 2 mask families for V-JEPA)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(first, other))
