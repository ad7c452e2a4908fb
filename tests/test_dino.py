"""DINO loss against a hand-written reference, the EMA teacher math, and the method's contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from methods.dino import DINO, dino_loss
from methods.ema import EMATeacher, ema_momentum


def reference_dino_loss(student, teacher, center, st, tt):
    """Loop over every (teacher view, student view) pair with different indices, per sample."""
    total, pairs = 0.0, 0
    for ti, t in enumerate(teacher):
        for si, s in enumerate(student):
            if si == ti:
                continue
            per_sample = []
            for b in range(t.shape[0]):
                q = [math.exp((t[b, k] - center[0, k]) / tt) for k in range(t.shape[1])]
                zq = sum(q)
                e = [math.exp(s[b, k] / st) for k in range(s.shape[1])]
                ze = sum(e)
                per_sample.append(-sum(q[k] / zq * math.log(e[k] / ze) for k in range(t.shape[1])))
            total += sum(per_sample) / len(per_sample)
            pairs += 1
    return total / pairs


def test_dino_loss_matches_reference():
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    student = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(4)]  # 2 global + 2 local
    center = torch.randn(1, 5, generator=g, dtype=torch.float64) * 0.1
    ours = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    ref = reference_dino_loss(student, teacher, center, 0.1, 0.04)
    assert ours.item() == pytest.approx(ref, rel=1e-5)
    # 2 teacher views x 4 student views minus the 2 same-view pairs = 6 pairs; centering matters
    assert dino_loss(student, teacher, center * 0, 0.1, 0.04).item() != pytest.approx(ref, rel=1e-3)


def test_ema_momentum_schedule_and_update():
    assert ema_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert ema_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert ema_momentum(100, 100, 0.99) == pytest.approx(1.0)
    student = nn.Linear(3, 2)
    teacher = EMATeacher(student, base_momentum=0.9)
    assert all(not p.requires_grad for p in teacher.parameters())
    t0 = teacher.module.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    m = teacher.update(student, 0, 10)
    assert m == pytest.approx(0.9)
    assert torch.allclose(teacher.module.weight, 0.9 * t0 + 0.1 * student.weight)


def test_dino_trains_student_only_and_evaluates_teacher():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=256, hidden_dim=128)
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    assert [v.shape[-1] for v in views] == [32, 32, 16, 16, 16, 16]
    out = m.training_loss(views)
    assert out["loss"].item() == pytest.approx(math.log(256), rel=0.1)  # ~uniform prototypes at init
    out["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert m.backbone.model.patch_embed.proj.weight.grad is not None
    assert m.encoder is m.teacher.module[0] and m.center.abs().sum() > 0
    assert m.current_teacher_temp() == pytest.approx(0.04)
    m.on_step_end(15, 100)
    assert 0.04 < m.current_teacher_temp() < 0.07


def test_dino_runs_on_a_resnet_with_a_chosen_number_of_local_crops():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    m = DINO(create_backbone("resnet18", 32, stem="small"), out_dim=64, hidden_dim=64, bottleneck_dim=32,
             local_crops=1)
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    assert [v.shape[-1] for v in views] == [32, 32, 16]
    out = m.training_loss(views)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["embedding"].shape == (4, 512)
    assert m.backbone.model.conv1.weight.grad is not None
    with pytest.raises(TypeError, match="local_crops"):
        DINO(create_backbone("resnet18", 32), local_crops=-1)


def test_patch_distillation_loss_matches_reference():
    """iBOT's masked-patch term: per image, the mean over its masked patches of the centred/sharpened
    cross-entropy; unmasked images count 0; mean over the batch."""
    from methods.dino import patch_distillation_loss, patch_row_weights
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    center = torch.randn(1, 1, 5, generator=g, dtype=torch.float64) * 0.1
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    per_image = []
    for b in range(3):
        ces = []
        for n in range(4):
            if not mask[b, n]:
                continue
            q = [math.exp((t[b, n, k] - center[0, 0, k]) / 0.04) for k in range(5)]
            e = [math.exp(s[b, n, k] / 0.1) for k in range(5)]
            ces.append(-sum(q[k] / sum(q) * math.log(e[k] / sum(e)) for k in range(5)))
        per_image.append(sum(ces) / len(ces) if ces else 0.0)
    ref = sum(per_image) / 3
    ours = patch_distillation_loss(s[mask], t[mask], patch_row_weights(mask, mask), 3, center, 0.1, 0.04)
    assert ours.item() == pytest.approx(ref, rel=1e-6)


def test_dino_patch_heads_score_only_the_masked_patches(monkeypatch):
    """As in DINOv2 the patch heads see the masked patches only (the loss reads no other); a batch with fewer
    than 2 masked patches still runs a BatchNorm head (zero-weight padding rows), scores 0 and leaves the patch
    centre as it is."""
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    import methods.dino as dino_module
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8, global_pool="avg", class_token=False), out_dim=64,
             hidden_dim=64, bottleneck_dim=32, head_bn=True, local_crops=1, patch_loss_weight=1.0, mask_prob=1.0,
             mask_ratio=(0.25, 0.25))
    rows = []
    for head in (m.patch_head, m.patch_teacher.module):
        head.register_forward_hook(lambda mod, inp, out: rows.append(len(inp[0])))
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    assert rows == [12 * 4, 12 * 4] and out["patch_loss"] > 0  # 12 global views, 4 of 16 patches masked each
    monkeypatch.setattr(dino_module, "random_patch_mask", lambda b, n, *a, **k: torch.zeros(b, n, dtype=torch.bool))
    m.patch_center.fill_(0.5)
    out = m.training_loss(views)
    out["loss"].backward()
    assert rows[2:] == [2, 2] and out["patch_loss"].item() == 0 and bool((m.patch_center == 0.5).all())


def test_random_patch_mask_counts():
    from methods.dino import random_patch_mask
    torch.manual_seed(0)
    m = random_patch_mask(2000, 64, prob=0.5, ratio=(0.1, 0.5))
    counts = m.sum(1)
    masked = counts > 0
    assert 0.45 < masked.float().mean() < 0.55                       # about half the images are masked
    assert counts[masked].min() >= round(0.1 * 64) and counts.max() <= round(0.5 * 64)
    assert not random_patch_mask(8, 64, prob=0.0, ratio=(0.1, 0.5)).any()


def test_backbone_mask_token_replaces_only_masked_patches():
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    bb = create_backbone("vit_tiny", 32, patch_size=8, class_token=True, global_pool="token").eval()
    x = torch.randn(2, 3, 32, 32)
    full = bb.tokens(x, prefix=True)
    assert torch.allclose(bb.pool(full), bb(x), atol=1e-6)                 # one pass gives pooled + tokens
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 5] = True
    token = torch.zeros(bb.embed_dim)
    emb = bb.model.patch_embed(x).flatten(1, 2)
    assert not torch.allclose(emb[0, 5], token)
    masked = bb.tokens(x, prefix=True, mask=mask, mask_token=token)
    assert torch.equal(masked[1], full[1])                                 # an unmasked image is untouched
    assert not torch.allclose(masked[0], full[0])
    with pytest.raises(TypeError, match="not a ViT"):
        create_backbone("resnet18", 32).tokens(x, mask=mask, mask_token=token)


def assert_head_learns_and_its_teacher_follows(m, head, teacher):
    """After a backward: the student head has gradients, its EMA teacher none, and on_step_end moves the teacher."""
    assert head.mlp[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    before = teacher.module.mlp[0].weight.clone()
    with torch.no_grad():
        head.mlp[0].weight.add_(1.0)
    m.on_step_end(0, 10)
    assert not torch.equal(before, teacher.module.mlp[0].weight)


def test_dino_patch_loss_trains_mask_token_and_patch_head_only_on_the_student():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8, class_token=True, global_pool="token"), out_dim=128,
             hidden_dim=64, head_bn=True, local_crops=1, patch_loss_weight=1.0, mask_prob=1.0, mask_ratio=(0.25, 0.25))
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    assert out["masked_frac"].item() == pytest.approx(0.25)
    # ~uniform prototypes at init: each term is about log K
    assert out["cls_loss"].item() == pytest.approx(math.log(128), rel=0.15)
    assert out["patch_loss"].item() == pytest.approx(math.log(128), rel=0.15)
    assert out["loss"].item() == pytest.approx(out["cls_loss"].item() + out["patch_loss"].item(), rel=1e-6)
    out["loss"].backward()
    assert m.mask_token.grad.abs().sum() > 0 and m.patch_center.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters())
    assert_head_learns_and_its_teacher_follows(m, m.patch_head, m.patch_teacher)
    with pytest.raises(TypeError, match="ViT"):
        DINO(create_backbone("resnet18", 32), patch_loss_weight=1.0)


def test_dino_shared_patch_head_scores_patches_with_the_image_head():
    """shared_patch_head: the masked-patch term runs the patch tokens through the image-level head (student)
    and the teacher's head - no second head or teacher copy."""
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    kw = dict(out_dim=128, hidden_dim=64, head_bn=True, local_crops=1, patch_loss_weight=1.0, mask_prob=1.0,
              mask_ratio=(0.25, 0.25))
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8, global_pool="avg", class_token=False),
             shared_patch_head=True, **kw)
    separate = DINO(create_backbone("vit_tiny", 32, patch_size=8, global_pool="avg", class_token=False), **kw)
    assert not hasattr(m, "patch_head") and not hasattr(m, "patch_teacher")
    head_params = sum(p.numel() for p in m.head.parameters())  # the separate variant: a head + its teacher copy
    assert sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in m.parameters()) == 2 * head_params
    rows = {"student": [], "teacher": []}
    m.head.register_forward_hook(lambda mod, inp, out: rows["student"].append(len(inp[0])))
    m.teacher.module[1].register_forward_hook(lambda mod, inp, out: rows["teacher"].append(len(inp[0])))
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    # pooled rows of the 3 views, then the masked patches of the 2 global views (4 of 16 at patch 8 on 32 px)
    assert rows == {"student": [4 * 3, 2 * 4 * 4], "teacher": [2 * 4, 2 * 4 * 4]}
    assert out["patch_loss"].item() == pytest.approx(math.log(128), rel=0.15)
    out["loss"].backward()  # the mask token reaches the loss only through the shared head's patch scores
    assert m.head.mlp[0].weight.grad.abs().sum() > 0 and m.mask_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters())
    before = m.teacher.module[1].mlp[0].weight.clone()
    with torch.no_grad():
        m.head.mlp[0].weight.add_(1.0)
    m.on_step_end(0, 10)  # the one teacher (backbone + head) follows; there is no patch teacher to update
    assert not torch.equal(before, m.teacher.module[1].mlp[0].weight)


def test_sinkhorn_knopp_balances_prototypes_like_a_reference_loop():
    """DINOv2's teacher targets: exp(t / tau) alternately normalised per prototype (to 1/K) and per image
    (to 1/B), 3 rounds, times B; rows sum to 1 and the prototype totals approach B / K."""
    from methods.dino import sinkhorn_knopp
    g = torch.Generator().manual_seed(2)
    t = torch.randn(6, 4, generator=g, dtype=torch.float64)
    b, k, tau = 6, 4, 0.5
    ref = [[math.exp(t[i, j].item() / tau) for j in range(k)] for i in range(b)]
    total = sum(map(sum, ref))
    ref = [[v / total for v in row] for row in ref]
    for _ in range(3):
        cols = [sum(ref[i][j] for i in range(b)) for j in range(k)]
        ref = [[ref[i][j] / cols[j] / k for j in range(k)] for i in range(b)]
        rows = [sum(r) for r in ref]
        ref = [[v / rows[i] / b for v in r] for i, r in enumerate(ref)]
    ours = sinkhorn_knopp(t, tau)
    assert torch.allclose(ours.double(), torch.tensor(ref, dtype=torch.float64) * b, atol=1e-6)
    assert torch.allclose(ours.sum(1), torch.ones(b, dtype=ours.dtype), atol=1e-6)
    many = sinkhorn_knopp(t * 0.2, tau, iterations=50)  # converged: every prototype holds B / K of the batch
    assert torch.allclose(many.sum(0), torch.full((k,), b / k, dtype=many.dtype), atol=1e-4)
    # a batch whose logits all prefer prototype 0 still gets spread targets (the EMA centre needs many steps)
    skewed = torch.zeros(8, 4)
    skewed[:, 0] = 5.0
    skewed += 0.1 * torch.randn(8, 4, generator=g)
    assert sinkhorn_knopp(skewed, 0.1, iterations=20).argmax(1).unique().numel() > 1


def test_koleo_loss_by_hand():
    """-mean_i log(distance to the nearest other point), points L2-normalised first."""
    from methods.dino import koleo_loss
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.1]])  # the third normalises next to the first
    n = torch.nn.functional.normalize(x, dim=-1)
    d01, d02 = (n[0] - n[1]).norm(), (n[0] - n[2]).norm()
    d12 = (n[1] - n[2]).norm()
    expected = -(torch.log(d02) + torch.log(min(d01, d12)) + torch.log(d02)) / 3
    assert koleo_loss(x).item() == pytest.approx(expected.item(), rel=1e-5)
    # spreading lowers it: orthogonal points beat a near-duplicate pair
    assert koleo_loss(torch.eye(3)) < koleo_loss(x)


def test_dino_sinkhorn_and_koleo_options_train_the_student():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=64, bottleneck_dim=32,
             local_crops=1, centering="sinkhorn", koleo_weight=0.1)
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    out["loss"].backward()
    assert m.center.abs().sum() == 0                         # the EMA centre is not used
    assert out["loss"].item() == pytest.approx(out["dino_loss"].item() + 0.1 * out["koleo"].item(), rel=1e-5)
    assert m.backbone.model.patch_embed.proj.weight.grad is not None
    assert all(p.grad is None for p in m.teacher.parameters())
    with pytest.raises(TypeError, match="centering"):
        DINO(create_backbone("resnet18", 32), centering="mean")


def test_mean_entropy_by_hand():
    """MSN's ME-MAX term: the entropy of the student's prediction averaged over views and batch."""
    from methods.dino import mean_entropy
    a = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])   # softmax rows (1/4, 3/4) and (1/2, 1/2) at tau = 1
    b = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])   # (1/2, 1/2) and (3/4, 1/4)
    p = [(0.25 + 0.5 + 0.5 + 0.75) / 4, (0.75 + 0.5 + 0.5 + 0.25) / 4]
    expected = -sum(x * math.log(x) for x in p)
    assert mean_entropy([a, b], student_temp=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert mean_entropy([torch.zeros(4, 8)]).item() == pytest.approx(math.log(8), rel=1e-6)   # uniform: ln K
    one_prototype = torch.tensor([[10.0, 0.0, 0.0]]).repeat(5, 1)
    assert mean_entropy([one_prototype]).item() < 1e-3                                      # all on one: 0


def test_dino_msn_options_drop_student_tokens_and_add_me_max():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=64, bottleneck_dim=32,
             local_crops=1, student_keep=0.5, me_max_weight=1.0)
    seen = []
    m.backbone.model.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[1]))
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    out["loss"].backward()
    cls = m.backbone.model.num_prefix_tokens
    assert seen == [8 + cls, 4 + cls]   # globals: 8 of 16 patches kept; the 16 px local crop keeps its 4
    assert out["loss"].item() == pytest.approx(out["dino_loss"].item() - out["me_max"].item(), rel=1e-5)
    assert 0 < out["me_max"].item() <= math.log(64) + 1e-5
    assert m.backbone.model.patch_embed.proj.weight.grad is not None
    assert all(p.grad is None for p in m.teacher.parameters())
    both = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=64, bottleneck_dim=32,
                local_crops=1, me_max_weight=1.0, koleo_weight=0.1)
    out = both.training_loss(views)                    # every enabled term reaches the loss
    assert out["loss"].item() == pytest.approx(
        out["dino_loss"].item() - out["me_max"].item() + 0.1 * out["koleo"].item(), rel=1e-5)
    with pytest.raises(TypeError, match="student_keep"):
        DINO(create_backbone("resnet18", 32), student_keep=0.5)
    with pytest.raises(TypeError, match="student_keep"):
        DINO(create_backbone("vit_tiny", 32, patch_size=8), student_keep=0.5, patch_loss_weight=1.0)
    with pytest.raises(TypeError, match="student_keep"):
        DINO(create_backbone("vit_tiny", 32, patch_size=8), student_keep=0.0)


def test_dino_blur_false_drops_blur_from_every_view():
    from bench.backbones import create_backbone
    m = DINO(create_backbone("resnet18", 32), local_crops=2, blur=False)
    assert len(m.views) == 4 and all(v.blur_p == 0.0 for v in m.views)
    assert DINO(create_backbone("resnet18", 32), local_crops=2).views[0].blur_p == 1.0


def test_dino_view_overrides_reach_every_view_and_unknown_fields_are_refused():
    from bench.backbones import create_backbone
    m = DINO(create_backbone("resnet18", 32), local_crops=2,
             view_overrides={"jitter_p": 0.0, "gray_p": 0.0, "solarize_p": 0.0, "jitter": [0.2, 0.2, 0.1, 0.0]})
    assert [(v.jitter_p, v.gray_p, v.solarize_p, v.jitter) for v in m.views] == [(0.0, 0.0, 0.0, (0.2, 0.2, 0.1, 0.0))] * 4
    assert [v.blur_p for v in m.views] == [1.0, 0.1, 0.5, 0.5]       # the fields not named keep each view's own value
    assert DINO(create_backbone("resnet18", 32)).views[1].solarize_p == 0.2
    with pytest.raises(TypeError, match="jiter_p"):
        DINO(create_backbone("resnet18", 32), view_overrides={"jiter_p": 0.0})


def test_dino_crop_scales_reach_the_views_and_bad_ranges_are_refused():
    from bench.backbones import create_backbone
    m = DINO(create_backbone("resnet18", 32), local_crops=2, global_crops_scale=(0.4, 1.0), local_crops_scale=(0.05, 0.4))
    assert [v.scale for v in m.views] == [(0.4, 1.0)] * 2 + [(0.05, 0.4)] * 2
    assert [v.size_frac for v in m.views] == [1.0, 1.0, 0.5, 0.5]
    assert [v.scale for v in DINO(create_backbone("resnet18", 32), local_crops=1).views] == [(0.25, 1.0)] * 2 + [(0.05, 0.25)]
    with pytest.raises(TypeError, match="global_crops_scale"):
        DINO(create_backbone("resnet18", 32), global_crops_scale=(0.6, 0.4))
    with pytest.raises(TypeError, match="local_crops_scale"):
        DINO(create_backbone("resnet18", 32), local_crops_scale=0.25)


def test_dino_sinkhorn_patch_centering_uses_balanced_patch_targets(monkeypatch):
    """patch_centering='sinkhorn' (DINOv2): the iBOT targets are Sinkhorn-Knopp over every masked teacher patch of
    the batch; the EMA patch centre stays unused while the global term keeps its EMA centre."""
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    from methods.dino import masked_patch_cross_entropy, patch_row_weights, sinkhorn_knopp
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=64, bottleneck_dim=32,
             local_crops=1, patch_loss_weight=1.0, mask_prob=1.0, patch_centering="sinkhorn")
    captured = {}
    m.patch_head.register_forward_hook(lambda mod, inp, out: captured.setdefault("student", out))
    m.patch_teacher.module.register_forward_hook(lambda mod, inp, out: captured.setdefault("teacher", out))
    import methods.dino as dino_module
    real_mask = dino_module.random_patch_mask
    monkeypatch.setattr(dino_module, "random_patch_mask",
                        lambda *a, **k: captured.setdefault("mask", real_mask(*a, **k)))
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    mask = captured["mask"]
    q = sinkhorn_knopp(captured["teacher"], m.current_teacher_temp())  # the masked patches' rows only
    assert len(q) == mask.sum() and q.sum(1).allclose(torch.ones(len(q)), atol=1e-5)
    expected = masked_patch_cross_entropy(captured["student"], q, patch_row_weights(mask, mask), len(mask), 0.1)
    assert out["patch_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert m.patch_center.abs().sum() == 0 and m.center.abs().sum() > 0
    with pytest.raises(TypeError, match="patch_centering"):
        DINO(create_backbone("vit_tiny", 32, patch_size=8), patch_centering="mean")


def test_random_block_mask_is_one_rectangle_of_the_drawn_size():
    from methods.dino import random_block_mask
    torch.manual_seed(0)
    m = random_block_mask(500, (8, 8), prob=0.5, ratio=(0.1, 0.5)).view(500, 8, 8)
    masked = m.flatten(1).any(1)
    assert 0.4 < masked.float().mean() < 0.6                    # ~half the images masked
    for img in m[masked][:100]:
        rows, cols = img.any(1).nonzero().flatten(), img.any(0).nonzero().flatten()
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert img.sum() == h * w                                # a full rectangle, contiguous
        assert 2 <= img.sum() <= 0.5 * 64 * 1.5                  # ~U(0.1, 0.5) of 64 patches after rounding
    assert not random_block_mask(8, (8, 8), prob=0.0, ratio=(0.1, 0.5)).any()


def test_dino_block_masks_reach_the_patch_term():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=64, bottleneck_dim=32,
             local_crops=1, patch_loss_weight=1.0, mask_prob=1.0, mask_ratio=(0.25, 0.25), mask_shape="block")
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    out["loss"].backward()
    assert 2 / 16 <= out["masked_frac"].item() <= 6 / 16         # a block of ~4 of the 4 x 4 grid's 16 patches
    assert out["patch_loss"].item() > 0 and m.mask_token.grad is not None
    with pytest.raises(TypeError, match="mask_shape"):
        DINO(create_backbone("vit_tiny", 32, patch_size=8), mask_shape="grid")


def test_dino_freeze_last_layer_drops_the_prototype_gradients_early_only():
    """DINO's cancel_gradients_last_layer: over the first freeze_last_layer of training the last layers of
    both heads get no gradient; the rest of the heads and the backbone still do; afterwards all do."""
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=32, local_crops=1,
             norm_last_layer=False, patch_loss_weight=1.0, mask_prob=1.0, freeze_last_layer=0.25)
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    last = [*m.head.last_layer.parameters(), *m.patch_head.last_layer.parameters()]
    assert len(last) == 4  # weight-norm gain and direction of each head
    for step, frozen in ((24, True), (25, False)):
        m.zero_grad(set_to_none=True)
        m.on_step_end(step, 100)
        m.training_loss(views)["loss"].backward()
        m.on_after_backward()
        assert all((p.grad is None) == frozen for p in last)
        assert m.head.mlp[0].weight.grad is not None and m.backbone.model.patch_embed.proj.weight.grad is not None
    with pytest.raises(TypeError, match="freeze_last_layer"):
        DINO(create_backbone("vit_tiny", 32, patch_size=8), freeze_last_layer=1.0)


def test_region_matching_loss_matches_a_loop_over_tokens():
    """EsViT's term: each student token takes the teacher distribution at its most similar token of another view."""
    from methods.dino import region_matching_loss
    torch.manual_seed(0)
    b, d, k = 2, 5, 7
    s_tok = [torch.randn(b, 4, d), torch.randn(b, 4, d), torch.randn(b, 2, d)]   # 2 global + 1 local student views
    s_log = [torch.randn(b, x.shape[1], k) for x in s_tok]
    t_tok = [torch.randn(b, 4, d), torch.randn(b, 4, d)]
    t_q = [torch.softmax(torch.randn(b, 4, k), -1) for _ in t_tok]
    total, pairs = 0.0, 0
    for ti in range(2):
        for si in range(3):
            if si == ti:
                continue
            ce = []
            for n in range(b):
                for i in range(s_tok[si].shape[1]):
                    cos = [F.cosine_similarity(s_tok[si][n, i], t_tok[ti][n, j], dim=0) for j in range(4)]
                    j = max(range(4), key=lambda j: cos[j])
                    log_p = torch.log_softmax(s_log[si][n, i] / 0.1, -1)
                    ce.append(-(t_q[ti][n, j] * log_p).sum())
            total += sum(ce) / len(ce)
            pairs += 1
    got = region_matching_loss(s_tok, s_log, t_tok, t_q, student_temp=0.1)
    assert got.item() == pytest.approx((total / pairs).item(), rel=1e-5)
    # a student token equal to teacher token 3 of the other view gets that token's target
    s_tok[1][0, 0] = t_tok[0][0, 3] * 2.0
    q = torch.zeros(b, 4, k)
    q[0, 3, 2] = 1.0                      # only that target is non-zero
    lone = region_matching_loss([t_tok[0][:, :0], s_tok[1][:, :1]], [s_log[0][:, :0], s_log[1][:, :1]],
                                [t_tok[0]], [q])
    assert lone.item() == pytest.approx(-torch.log_softmax(s_log[1][0, 0] / 0.1, -1)[2].item() / 2, rel=1e-5)


def test_dino_region_term_trains_its_own_head_on_every_student_view():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=128, hidden_dim=64, head_bn=True, local_crops=1,
             region_loss_weight=1.0)
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    assert out["region_loss"].item() == pytest.approx(math.log(128), rel=0.15)   # ~uniform prototypes at init
    assert out["loss"].item() == pytest.approx(out["cls_loss"].item() + out["region_loss"].item(), rel=1e-6)
    out["loss"].backward()
    assert m.region_center.abs().sum() > 0
    assert_head_learns_and_its_teacher_follows(m, m.region_head, m.region_teacher)
    with pytest.raises(TypeError, match="ViT"):
        DINO(create_backbone("resnet18", 32), region_loss_weight=1.0)


def test_masked_feature_regression_by_hand():
    """data2vec's target: per image, the mean over its masked patches of the channel-mean squared error to the
    teacher's token layer-normed without affine; unmasked images count 0; mean over the batch."""
    from methods.dino import masked_feature_regression, patch_row_weights
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(3, 4, 6, generator=g), torch.randn(3, 4, 6, generator=g) * 3 + 1
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    per_image = []
    for b in range(3):
        errs = []
        for n in range(4):
            if mask[b, n]:
                t = target[b, n]
                t = (t - t.mean()) / torch.sqrt(t.var(unbiased=False) + 1e-5)
                errs.append(float(((pred[b, n] - t) ** 2).mean()))
        per_image.append(sum(errs) / len(errs) if errs else 0.0)
    ours = masked_feature_regression(pred[mask], target[mask], patch_row_weights(mask, mask), 3)
    assert ours.item() == pytest.approx(sum(per_image) / 3, rel=1e-5)


def test_dino_feature_patch_target_trains_a_regressor_and_the_mask_token_only_on_the_student():
    from bench.augment import ViewAugmenter
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8, global_pool="avg", class_token=False), out_dim=64,
             hidden_dim=64, bottleneck_dim=32, head_bn=True, local_crops=1, patch_loss_weight=0.5, mask_prob=1.0,
             mask_ratio=(0.25, 0.25), patch_target="features")
    assert not any(hasattr(m, k) for k in ("patch_head", "patch_teacher", "patch_center"))
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    # a near-zero regression at init against unit-variance targets: the error is about 1 per channel
    assert out["patch_loss"].item() == pytest.approx(1.0, rel=0.3)
    assert out["loss"].item() == pytest.approx(out["cls_loss"].item() + 0.5 * out["patch_loss"].item(), rel=1e-6)
    out["loss"].backward()
    assert m.patch_regressor.weight.grad.abs().sum() > 0 and m.mask_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters())
    with pytest.raises(TypeError, match="patch_target"):
        DINO(create_backbone("vit_tiny", 32, patch_size=8), patch_loss_weight=1.0, patch_target="pixels")
    with pytest.raises(TypeError, match="shared_patch_head"):
        DINO(create_backbone("vit_tiny", 32, patch_size=8), patch_loss_weight=1.0, patch_target="features",
             shared_patch_head=True)
