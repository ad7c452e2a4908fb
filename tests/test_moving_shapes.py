"""moving-shapes: determinism by seed, balanced labels, shapes stay in frame and move; the push env."""

from __future__ import annotations

import pytest
import torch

from bench.data.moving_shapes import DIRECTIONS, SHAPES, PushEnv, load_moving_shapes, moving_shapes


def test_clips_are_a_pure_function_of_the_seed():
    a, la = moving_shapes(24, frames=6, size=32, seed=3)
    b, lb = moving_shapes(24, frames=6, size=32, seed=3)
    c, _ = moving_shapes(24, frames=6, size=32, seed=4)
    assert a.shape == (24, 6, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and all(torch.equal(la[k], lb[k]) for k in la)
    assert not torch.equal(a, c)


def test_labels_are_balanced_and_splits_differ():
    _, labels = moving_shapes(120, frames=2, seed=0)
    assert torch.bincount(labels["shape"]).tolist() == [40] * len(SHAPES)
    assert torch.bincount(labels["direction"]).tolist() == [30] * len(DIRECTIONS)
    train, val = load_moving_shapes("train", n_train=12, n_val=12), load_moving_shapes("val", n_train=12, n_val=12)
    assert train.fingerprint != val.fingerprint and len(train) == 12


def test_the_shape_moves_along_its_direction():
    clips, labels = moving_shapes(48, frames=3, size=32, seed=0)
    bright = clips.float().amax(2) > 0.44 * 255  # the moving shape is the only bright object
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    w = bright.float()
    cx = (w * xs).sum((-1, -2)) / w.sum((-1, -2)).clamp(min=1)
    cy = (w * ys).sum((-1, -2)) / w.sum((-1, -2)).clamp(min=1)
    assert bool((w.sum((-1, -2)) > 5).all())  # visible in every frame
    dx, dy = cx[:, 1] - cx[:, 0], cy[:, 1] - cy[:, 0]
    expected = torch.stack([dx, -dx, dy, -dy], 1)  # displacement along right, left, down, up
    moved_right_way = expected.gather(1, labels["direction"][:, None]).squeeze(1) > 0
    assert moved_right_way.float().mean() > 0.8  # except clips that bounced on the first step


def test_push_env_steps_clips_and_renders():
    env = PushEnv(size=32, max_step=3.0, radius=3.0)
    s = torch.tensor([[10.0, 10.0]])
    assert torch.allclose(env.step(s, torch.tensor([[1.0, -0.5]])), torch.tensor([[13.0, 8.5]]))
    assert torch.allclose(env.step(s, torch.tensor([[-10.0, 0.0]])), torch.tensor([[7.0, 10.0]]))  # action clipped
    far = env.rollout(s, torch.ones(1, 20, 2))
    assert far.shape == (1, 21, 2) and torch.allclose(far[0, -1], torch.tensor([29.0, 29.0]))  # wall
    ep = env.random_episodes(5, horizon=4, seed=0)
    assert ep["frames"].shape == (5, 5, 3, 32, 32) and ep["actions"].shape == (5, 4, 2)
    assert torch.equal(ep["frames"], env.random_episodes(5, horizon=4, seed=0)["frames"])
    # the agent is drawn where its state says
    frame = env.render(torch.tensor([20.0, 8.0]))
    assert frame[0, 8, 20] == 255 and frame[0, 24, 5] < 100


def test_video_vit_tubelets_tokens_and_keep():
    from bench.backbones import create_backbone, sincos_pos_embed
    torch.manual_seed(0)
    b = create_backbone("video_vit_tiny", 32, patch_size=8, tubelet=2).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    tok = b.tokens(x)
    assert tok.shape == (2, 2 * 4 * 4, 192) and b(x).shape == (2, 192)
    assert b.grid(x) == (2, 4, 4)
    # keep-indices: the kept tokens' outputs equal a pass over exactly those tokens (positions preserved)
    keep = torch.tensor([[0, 17, 31], [5, 6, 7]])
    assert b.tokens(x, keep=keep).shape == (2, 3, 192)
    # a change in the second tubelet (frames 2-3) changes tokens; it is a real 3-D embedding
    y = x.clone()
    y[:, 2:] += 1.0
    assert not torch.allclose(b.tokens(y), tok)
    # 3-D position embedding: distinct per position, fixed (not a parameter)
    pe = sincos_pos_embed(192, (2, 4, 4))
    assert pe.shape == (32, 192) and torch.cdist(pe, pe).add(torch.eye(32) * 1e3).min() > 0.1
    assert not any("pos" in n for n, _ in b.named_parameters())
    with pytest.raises(ValueError, match="tubelets"):
        b(torch.randn(1, 3, 3, 32, 32))  # 3 frames do not split into 2-frame tubelets


@pytest.mark.parametrize("blocks,scale", [(8, (0.15, 0.15)), (2, (0.7, 0.7))])
def test_vjepa_masks_are_tubes_disjoint_and_rectangular(blocks, scale):
    from methods.masks import sample_vjepa_masks
    g = torch.Generator().manual_seed(0)
    t, h, w = 4, 8, 8
    ctx, tgt = sample_vjepa_masks(16, (t, h, w), g, num_blocks=blocks, scale=scale)
    assert ctx.ndim == tgt.ndim == 2 and len(ctx) == len(tgt) == 16
    assert ctx.shape[1] > 0 and tgt.shape[1] > 0
    for c, m in zip(ctx, tgt):
        assert not set(c.tolist()) & set(m.tolist())                      # disjoint
        assert len(set(c.tolist())) == len(c) and max(c.tolist() + m.tolist()) < t * h * w
    # before the batch-wide trimming, a target tube covers the same cells in every frame
    one_ctx, one_tgt = sample_vjepa_masks(1, (t, h, w), torch.Generator().manual_seed(1), num_blocks=blocks, scale=scale)
    cells = [set((one_tgt[0][(one_tgt[0] // (h * w)) == f] % (h * w)).tolist()) for f in range(t)]
    assert all(c == cells[0] for c in cells) and len(one_ctx[0]) + len(one_tgt[0]) == t * h * w


def test_clip_views_share_one_crop_across_frames():
    from bench.augment import ViewAugmenter, ViewSpec, eval_transform
    torch.manual_seed(0)
    frame = torch.randint(0, 255, (1, 1, 3, 32, 32), dtype=torch.uint8).expand(4, -1, -1, -1, -1)
    clips = frame.expand(-1, 6, -1, -1, -1).contiguous()  # 4 identical static clips: all frames equal
    (view,) = ViewAugmenter([ViewSpec(scale=(0.2, 0.5))], 16)(clips)
    assert view.shape == (4, 6, 3, 16, 16)
    assert torch.allclose(view, view[:, :1].expand_as(view), atol=1e-5)  # same crop / jitter on every frame
    assert not torch.allclose(view[0], view[1])  # but each clip draws its own parameters
    images = ViewAugmenter([ViewSpec()], 16)(frame[:, 0])[0]
    assert images.shape == (4, 3, 16, 16)
    assert eval_transform(clips, 16).shape == (4, 6, 3, 16, 16)


def test_vjepa_step_on_clips_trains_student_and_predictor_only():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    from methods import get_method
    torch.manual_seed(0)
    m = get_method("vjepa")(create_backbone("video_vit_tiny", 32, patch_size=8, tubelet=2), pred_dim=32, pred_depth=1,
                            pred_heads=2)
    clips, _ = moving_shapes(4, frames=4, size=32, seed=0)
    views = ViewAugmenter(m.views, 32)(clips)
    out = m.training_loss(views)
    assert torch.isfinite(out["loss"]) and out["short_range"] > 0 and out["long_range"] > 0
    out["loss"].backward()
    assert m.backbone.tubelet_embed.weight.grad is not None and m.predictor.mask_token.grad is not None
    assert all(p.grad is None for p in m.teacher.parameters())
    assert m.encoder is m.teacher.module
    with pytest.raises(TypeError, match="video backbone"):
        get_method("vjepa")(create_backbone("vit_tiny", 32, patch_size=8))
