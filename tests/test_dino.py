"""DINO loss against a hand-written reference, the EMA teacher math, and the method's contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

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
