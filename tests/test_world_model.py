"""World model pieces: CEM finds the optimum of a known cost."""

from __future__ import annotations

import pytest
import torch

from bench.world_model.cem import cem_plan


def test_cem_finds_the_minimum_of_a_quadratic():
    target = torch.tensor([[0.3, -0.7], [0.9, 0.1], [-0.5, 0.5]])  # (H, A), inside the action box
    weights = torch.tensor([1.0, 3.0])

    def cost(seqs):  # (S, H, A) -> (S,)
        return ((seqs - target) ** 2 * weights).sum((1, 2))

    plan = cem_plan(cost, horizon=3, action_dim=2, iters=12, samples=256, elites=25,
                    generator=torch.Generator().manual_seed(0))
    assert plan.shape == (3, 2) and torch.allclose(plan, target, atol=0.05)


def test_cem_respects_the_action_box_and_checks_its_arguments():
    plan = cem_plan(lambda s: -(s.sum((1, 2))), horizon=4, action_dim=2, generator=torch.Generator().manual_seed(0))
    assert plan.max() <= 1.0 and plan.min() > 0.9  # optimum on the box edge
    with pytest.raises(ValueError, match="elites"):
        cem_plan(lambda s: s.sum((1, 2)), 2, 2, samples=8, elites=9)
