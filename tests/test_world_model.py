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


def test_block_causal_mask_blocks_only_later_steps():
    from bench.world_model.predictor import block_causal_mask
    m = block_causal_mask(3, 2)
    assert m.shape == (6, 6)
    assert not m[0, 1] and not m[1, 0]  # same step: visible both ways
    assert m[1, 2] and not m[2, 1]      # step 0 cannot see step 1; step 1 sees step 0


def test_predictor_has_no_future_leakage_and_learns_a_linear_dynamics():
    from bench.world_model.predictor import ActionConditionedPredictor
    torch.manual_seed(0)
    p = ActionConditionedPredictor(embed_dim=8, action_dim=2, dim=32, depth=2, heads=2, tokens_per_frame=3).eval()
    z, a = torch.randn(2, 5, 3, 8), torch.randn(2, 5, 2)
    out = p(z, a)
    assert out.shape == (2, 5, 3, 8)
    z2, a2 = z.clone(), a.clone()
    z2[:, 3] += 5.0   # perturb frame 3 and the action after it
    a2[:, 3] -= 5.0
    out2 = p(z2, a2)
    assert torch.allclose(out[:, :3], out2[:, :3], atol=1e-5)  # predictions from steps 0-2 unchanged
    assert not torch.allclose(out[:, 3:], out2[:, 3:])
    # learning: z_{t+1} = z_t + W a_t is fitted far below the loss of predicting "no change"
    p.train()
    w = torch.randn(2, 8)
    opt = torch.optim.AdamW(p.parameters(), 3e-3)
    for step in range(150):
        acts = torch.randn(16, 4, 2)
        frames = [torch.randn(16, 1, 8)]
        for t in range(4):
            frames.append(frames[-1] + (acts[:, t] @ w)[:, None])
        zs = torch.stack(frames, 1).expand(-1, -1, 3, -1)
        terms = p.loss(zs, acts)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    still = torch.nn.functional.l1_loss(zs[:, :-1], zs[:, 1:]).item()
    assert terms["teacher_forcing"].item() < 0.5 * still, (terms, still)
    assert p.rollout(zs[:, 0], acts[:, :3]).shape == (16, 3, 3, 8)
