"""DINO: dino_loss against a hand-written reference, the centre, the teacher temperature warm-up, the EMA teacher,
multi-crop views and the method's contract; a short training run that learns (slow)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.augment import ViewAugmenter
from bench.backbones import create_backbone
from methods.dino import DINO, dino_loss, update_center
from methods.ema import EMATeacher, ema_momentum
from methods.ibot import IBOT


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


def test_dino_blur_false_drops_blur_from_every_view():
    m = DINO(create_backbone("resnet18", 32), local_crops=2, blur=False)
    assert len(m.views) == 4 and all(v.blur_p == 0.0 for v in m.views)
    assert DINO(create_backbone("resnet18", 32), local_crops=2).views[0].blur_p == 1.0


def test_dino_view_overrides_reach_every_view_and_unknown_fields_are_refused():
    m = DINO(create_backbone("resnet18", 32), local_crops=2,
             view_overrides={"jitter_p": 0.0, "gray_p": 0.0, "solarize_p": 0.0, "jitter": [0.2, 0.2, 0.1, 0.0]})
    assert [(v.jitter_p, v.gray_p, v.solarize_p, v.jitter) for v in m.views] == [(0.0, 0.0, 0.0, (0.2, 0.2, 0.1, 0.0))] * 4
    assert [v.blur_p for v in m.views] == [1.0, 0.1, 0.5, 0.5]       # the fields not named keep each view's own value
    assert DINO(create_backbone("resnet18", 32)).views[1].solarize_p == 0.2
    with pytest.raises(TypeError, match="jiter_p"):
        DINO(create_backbone("resnet18", 32), view_overrides={"jiter_p": 0.0})


def test_dino_crop_scales_reach_the_views_and_bad_ranges_are_refused():
    m = DINO(create_backbone("resnet18", 32), local_crops=2, global_crops_scale=(0.4, 1.0), local_crops_scale=(0.05, 0.4))
    assert [v.scale for v in m.views] == [(0.4, 1.0)] * 2 + [(0.05, 0.4)] * 2
    assert [v.size_frac for v in m.views] == [1.0, 1.0, 0.5, 0.5]
    assert [v.scale for v in DINO(create_backbone("resnet18", 32), local_crops=1).views] == [(0.25, 1.0)] * 2 + [(0.05, 0.25)]
    with pytest.raises(TypeError, match="global_crops_scale"):
        DINO(create_backbone("resnet18", 32), global_crops_scale=(0.6, 0.4))
    with pytest.raises(TypeError, match="local_crops_scale"):
        DINO(create_backbone("resnet18", 32), local_crops_scale=0.25)


def test_update_center_is_an_ema_of_the_teacher_batch_mean():
    """C <- m C + (1 - m) mean_rows(t), by hand; an empty batch leaves C as it is."""
    center = torch.tensor([[1.0, -2.0, 0.5]])
    t = torch.tensor([[0.0, 1.0, 2.0], [2.0, 3.0, -4.0]])
    update_center(center, t, momentum=0.9)
    assert torch.allclose(center, torch.tensor([[0.9 * 1.0 + 0.1 * 1.0, 0.9 * -2.0 + 0.1 * 2.0, 0.9 * 0.5 + 0.1 * -1.0]]))
    before = center.clone()
    update_center(center, t[:0], momentum=0.9)
    assert torch.equal(center, before)


def test_teacher_temperature_warms_up_linearly_then_stays():
    m = DINO(create_backbone("resnet18", 32), out_dim=16, hidden_dim=16, bottleneck_dim=8, local_crops=0,
             warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_frac=0.3)
    temps = []
    for step in (0, 15, 30, 60):
        m.on_step_end(step, 100)
        temps.append(m.current_teacher_temp())
    assert temps == pytest.approx([0.04, 0.055, 0.07, 0.07])


def test_dino_koleo_weight_adds_koleo_on_each_global_view():
    from methods.losses import koleo_loss
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=64, bottleneck_dim=32,
             local_crops=1, koleo_weight=0.1)
    feats = []
    m.backbone.register_forward_hook(lambda mod, inp, out: feats.append(out))
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8))
    out = m.training_loss(views)
    expected = sum(koleo_loss(f) for f in feats[0].chunk(2))   # the student's global-view features
    assert out["koleo"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(out["dino_loss"].item() + 0.1 * out["koleo"].item(), rel=1e-5)
    out["loss"].backward()
    assert m.backbone.model.patch_embed.proj.weight.grad is not None
    assert all(p.grad is None for p in m.teacher.parameters())


@pytest.mark.parametrize("cls", [DINO, IBOT])
def test_freeze_last_layer_drops_every_heads_prototype_gradients_early_only(cls):
    """DINO's cancel_gradients_last_layer: over the first freeze_last_layer of training the last layers of
    every head (iBOT: the patch head too) get no gradient; the rest and the backbone still do; afterwards all do."""
    torch.manual_seed(0)
    m = cls(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=32, local_crops=1,
            norm_last_layer=False, freeze_last_layer=0.25)
    views = ViewAugmenter(m.views, 32)(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    heads = [m.head] + ([m.patch_head] if cls is IBOT else [])
    last = [p for h in heads for p in h.last_layer.parameters()]
    assert len(last) == 2 * len(heads)  # weight-norm gain and direction of each head
    for step, frozen in ((24, True), (25, False)):
        m.zero_grad(set_to_none=True)
        m.on_step_end(step, 100)
        m.training_loss(views)["loss"].backward()
        m.on_after_backward()
        assert all((p.grad is None) == frozen for p in last)
        assert m.head.mlp[0].weight.grad is not None and m.backbone.model.patch_embed.proj.weight.grad is not None
    with pytest.raises(TypeError, match="freeze_last_layer"):
        cls(create_backbone("vit_tiny", 32, patch_size=8), freeze_last_layer=1.0)


def _cross_view_agreement(m, views):
    """(mean CE of the student on view 2 against the teacher on view 1 of the same image, the same for other
    images, how many prototypes the teacher's argmax uses)."""
    with torch.no_grad():
        q = torch.softmax((m.teacher.module(views[0]) - m.center) / m.current_teacher_temp(), -1)
        ce = -(q @ torch.log_softmax(m.head(m.backbone(views[1])) / m.student_temp, -1).T)   # (teacher b, student b')
        n = len(ce)
        return ce.diag().mean().item(), ((ce.sum() - ce.diag().sum()) / (n * (n - 1))).item(), q.argmax(1).unique().numel()


@pytest.mark.slow
def test_dino_learns_cross_view_agreement_without_collapsing(train_steps):
    """30 AdamW steps (~10 s) on one fixed multi-crop batch of 16 smooth images with the recipe's head (BatchNorm,
    free last-layer gain): the loss falls, the student's prediction on one view matches the teacher's on another
    view of the *same* image far better than on other images (the gap grows) - and the teacher still spreads the
    images over several prototypes (collapse would lower the loss but close the gap)."""
    from torch.nn import functional as F
    torch.manual_seed(0)
    m = DINO(create_backbone("vit_tiny", 32, patch_size=8), out_dim=64, hidden_dim=128, bottleneck_dim=32,
             local_crops=2, ema=0.9, head_bn=True, norm_last_layer=False)
    g = torch.Generator().manual_seed(0)
    images = (F.interpolate(torch.rand(16, 3, 4, 4, generator=g), size=32, mode="bilinear") * 255).to(torch.uint8)
    views = ViewAugmenter(m.views, 32)(images)
    same0, other0, _ = _cross_view_agreement(m, views)
    teacher0 = m.teacher.module[0].model.patch_embed.proj.weight.clone()
    losses = train_steps(m, views, 30)
    same, other, prototypes = _cross_view_agreement(m, views)
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0]
    assert other - same > (other0 - same0) + 0.3, (same0, other0, same, other)
    assert prototypes >= 4
    assert not torch.equal(teacher0, m.teacher.module[0].model.patch_embed.proj.weight)   # the EMA teacher followed
