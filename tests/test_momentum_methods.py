"""BYOL and MoCo v3: losses by hand, the momentum encoder's cosine schedule, and real cross-view learning."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from bench.augment import ViewAugmenter
from bench.backbones import create_backbone
from methods.byol import BYOL, byol_loss
from methods.ema import ema_momentum
from methods.mocov3 import MoCoV3, mocov3_loss

SMALL_HEADS = dict(proj_hidden_dim=64, proj_dim=32, pred_hidden_dim=64)


def test_byol_loss_by_hand():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    z = torch.tensor([[1.0, 1.0], [0.0, -3.0]], requires_grad=True)
    loss = byol_loss(p, z)  # cos = 1/sqrt(2) and -1: (2 - sqrt(2) + 4) / 2
    assert loss.item() == pytest.approx((2 - math.sqrt(2) + 4) / 2, rel=1e-6)
    loss.backward()
    assert p.grad.abs().sum() > 0 and z.grad is None  # the target is a constant
    assert byol_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([[5.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-7)


def test_mocov3_loss_by_hand():
    q = torch.tensor([[3.0, 4.0], [1.0, 0.0]], requires_grad=True)
    k = torch.tensor([[0.0, 2.0], [1.0, 1.0]], requires_grad=True)
    tau = 0.2
    # u = (0.6, 0.8), (1, 0); w = (0, 1), (1, 1)/sqrt(2); s = u w^T / tau
    s = [[0.8 / tau, 1.4 / math.sqrt(2) / tau], [0.0, 1 / math.sqrt(2) / tau]]
    ce = [-s[i][i] + math.log(math.exp(s[i][0]) + math.exp(s[i][1])) for i in range(2)]
    loss = mocov3_loss(q, k, tau)
    assert loss.item() == pytest.approx(2 * tau * sum(ce) / 2, rel=1e-6)
    assert mocov3_loss(q, k, 1.0).item() == pytest.approx(
        2 * sum(-x[i] + math.log(math.exp(x[0]) + math.exp(x[1]))
                for i, x in enumerate([[v * tau for v in row] for row in s])) / 2, rel=1e-6)
    loss.backward()
    assert q.grad.abs().sum() > 0 and k.grad is None  # the keys are constants


@pytest.mark.parametrize("cls, base", [(BYOL, 0.996), (MoCoV3, 0.99)])
def test_momentum_encoder_is_the_ema_of_encoder_and_projector_by_a_cosine(cls, base):
    torch.manual_seed(0)
    m = cls(create_backbone("resnet18", 32), **SMALL_HEADS)
    target_net = m.teacher.module
    assert len(target_net) == 2 and not any(p.requires_grad for p in target_net.parameters())
    assert sum(p.numel() for p in target_net.parameters()) == \
        sum(p.numel() for p in m.backbone.parameters()) + sum(p.numel() for p in m.projector.parameters())
    out = m.training_loss([torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)])
    out["loss"].backward()
    assert m.predictor[0].weight.grad.abs().sum() > 0 and m.backbone.model.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in target_net.parameters())
    before = target_net[1][0].weight.clone()
    with torch.no_grad():
        m.projector[0].weight.add_(1.0)   # the online projector moves
    m.on_step_end(25, 100)
    mom = ema_momentum(25, 100, base)     # 1 - (1 - base) (cos(pi / 4) + 1) / 2
    assert mom == pytest.approx(1 - (1 - base) * (math.cos(math.pi / 4) + 1) / 2)
    assert torch.allclose(target_net[1][0].weight, mom * before + (1 - mom) * m.projector[0].weight, atol=1e-6)
    assert m.encoder is m.backbone  # the probes evaluate the online encoder


def _cross_view_gap(m, views) -> float:
    """mean cos(q(view 1 of i), target(view 2 of i)) - mean over i != j of cos(q(view 1 of i), target(view 2 of j))."""
    with torch.no_grad():
        b = len(views[0])
        q = F.normalize(m.predictor(m.projector(m.backbone(torch.cat(views))))[:b], dim=1)
        s = q @ F.normalize(m.teacher(views[1]), dim=1).T
    return (s.diag().mean() - (s.sum() - s.diag().sum()) / (b * b - b)).item()


@pytest.mark.slow
@pytest.mark.parametrize("cls", [BYOL, MoCoV3])
def test_learns_cross_view_agreement(cls, train_steps):
    """30 AdamW steps (~10 s) on one fixed pair of augmented views of 32 smooth 16 px images (a 2-block ViT): the
    loss falls, and the online prediction of one view matches the momentum encoder's output for the other view of
    the *same* image far better than for other images (a collapsed or a non-learning model leaves the gap ~0)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = (F.interpolate(torch.rand(32, 3, 4, 4, generator=g), size=16, mode="bilinear") * 255).to(torch.uint8)
    m = cls(create_backbone("vit_tiny", 16, patch_size=4, depth=2), proj_hidden_dim=256, proj_dim=64,
            pred_hidden_dim=256, ema=0.99)
    views = ViewAugmenter(m.views, 16)(images)
    gap0, target0 = _cross_view_gap(m, views), m.teacher.module[0].model.patch_embed.proj.weight.clone()
    losses = train_steps(m, views, 30)
    gap = _cross_view_gap(m, views)
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0], losses
    assert gap > gap0 + 0.3, (gap0, gap)
    assert not torch.equal(target0, m.teacher.module[0].model.patch_embed.proj.weight)  # the EMA target followed
