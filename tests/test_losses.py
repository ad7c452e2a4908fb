"""Losses equal hand-written references of the paper formulas (explicit loops, float64)."""

import math

import pytest
import torch

from methods.barlow_twins import barlow_twins_loss
from methods.losses import koleo_loss
from methods.simclr import nt_xent_loss


def nt_xent_reference(z1, z2, t):
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    u = [z[i] / math.sqrt(float((z[i] ** 2).sum())) for i in range(n2)]
    sim = [[float((u[i] * u[j]).sum()) / t for j in range(n2)] for i in range(n2)]
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        denom = sum(math.exp(sim[i][k]) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[i][pos]) / denom)
    return total / n2


def barlow_reference(z1, z2, lambd):
    n, d = z1.shape
    def std(z):
        z = z.double()
        mean = [sum(float(z[b, j]) for b in range(n)) / n for j in range(d)]
        var = [sum((float(z[b, j]) - mean[j]) ** 2 for b in range(n)) / n for j in range(d)]
        return [[(float(z[b, j]) - mean[j]) / math.sqrt(var[j] + 1e-5) for j in range(d)] for b in range(n)]
    a, b = std(z1), std(z2)
    c = [[sum(a[k][i] * b[k][j] for k in range(n)) / n for j in range(d)] for i in range(d)]
    on = sum((1 - c[i][i]) ** 2 for i in range(d))
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on + lambd * off


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nt_xent_matches_reference(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert nt_xent_loss(z1, z2, t).item() == pytest.approx(nt_xent_reference(z1, z2, t), rel=1e-5)


def test_nt_xent_identical_views_low_loss_and_symmetric():
    z = torch.eye(8) * 3
    low = nt_xent_loss(z, z, 0.1).item()
    rand = nt_xent_loss(z, torch.randn(8, 8), 0.1).item()
    assert low < 0.01 < rand
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    assert nt_xent_loss(z1, z2).item() == pytest.approx(nt_xent_loss(z2, z1).item(), rel=1e-6)


@pytest.mark.parametrize("lambd", [5e-3, 0.5])
def test_barlow_twins_matches_reference(lambd):
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    assert barlow_twins_loss(z1, z2, lambd).item() == pytest.approx(barlow_reference(z1, z2, lambd), rel=1e-5)


def test_barlow_twins_zero_for_identical_decorrelated_views():
    # orthogonal, zero-mean, unit-variance columns -> C = I -> loss 0
    h = torch.tensor([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    assert barlow_twins_loss(h, h, 5e-3).item() == pytest.approx(0.0, abs=1e-4)
    assert barlow_twins_loss(h, -h, 5e-3).item() == pytest.approx(8.0, rel=1e-3)  # C = -I: 2 * (1 - -1)^2


def test_koleo_loss_by_hand():
    """-mean_i log(distance to the nearest other point), the points L2-normalised first (DINOv2's KoLeo)."""
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.3], [-1.0, -1.0]], dtype=torch.float64)
    u = [row / math.sqrt(float((row ** 2).sum())) for row in x]
    dist = [[math.sqrt(float(((a - b) ** 2).sum())) for b in u] for a in u]
    expected = -sum(math.log(min(d for j, d in enumerate(row) if j != i) + 1e-8) for i, row in enumerate(dist)) / 4
    assert koleo_loss(x).item() == pytest.approx(expected, rel=1e-5)
    assert koleo_loss(x * 7.0).item() == pytest.approx(expected, rel=1e-5)        # scale-free: rows are normalised
    assert koleo_loss(torch.eye(3)) < koleo_loss(x[:3])                             # spreading lowers it
