"""push-plan-v1 (`bench plan`): the CLI end to end with tiny world models, the CEM + MPC loop with the
true dynamics, fixed task lists, and one-line errors for bad input.
(CEM on a quadratic, the block-causal mask and future leakage are in test_world_model.py.)"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from bench.cli import main
from bench.world_model.planning import (PLANNERS, PlanConfig, PlanResult, run_mpc, run_planning_benchmark,
                                        sample_tasks, task_seeds)
from bench.world_model.train import EnvConfig

#: world models of a few hundred parameters trained for a few steps: checks the plumbing, not the planning
TINY = ["--set", "wm.episodes=16", "--set", "wm.val_episodes=8", "--set", "wm.episode_len=3", "--set", "wm.steps=4",
        "--set", "wm.dim=16", "--set", "wm.depth=1", "--set", "wm.heads=2", "--set", "wm.warmup_steps=1",
        "--set", "plan.steps=4", "--set", "plan.samples=8", "--set", "plan.elites=2", "--set", "plan.iters=2"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small matmuls on a busy 2-core machine: one thread is many times faster than two fighting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _plan(tmp, *extra):
    return ["plan", "--results", str(tmp / "results"), "--leaderboards", str(tmp / "lb"),
            "--models-dir", str(tmp / "models"), "--cache-dir", str(tmp / "cache"), "--no-progress", *extra]


def test_bench_plan_writes_a_result_with_every_planner_and_reuses_its_world_models(tmp_path):
    assert main(_plan(tmp_path, "--encoder", "random", "--episodes", "3", *TINY)) == 0
    (path,) = (tmp_path / "results" / "push-plan-v1").glob("*.json")
    res = PlanResult.model_validate_json(path.read_text())
    assert res.encoder == "random-vit" and res.task_seeds == [0, 1, 2] and res.plan.steps == 4
    assert [m.method for m in res.methods] == list(PLANNERS)
    for m in res.methods:
        assert 0 <= m.success_rate <= 100 and len(m.final_distances) == 3
        assert (m.world_model is not None) == (m.method in ("pixel", "jepa"))
    wms = {m.method: m.world_model for m in res.methods if m.world_model}
    assert wms["pixel"]["encoder"] == "pixels8" and wms["jepa"]["encoder"] == "random-vit"
    assert not wms["jepa"]["reused"] and wms["jepa"]["config"]["steps"] == 4
    md = (tmp_path / "lb" / "push-plan-v1" / "random-vit.md").read_text()
    assert res.run_id in md and all(f"| {p}" in md for p in PLANNERS)
    # a second run with the same encoder and settings loads the saved world model instead of training
    assert main(_plan(tmp_path, "--encoder", "random", "--episodes", "3", "--methods", "jepa", *TINY)) == 0
    latest = max((tmp_path / "results" / "push-plan-v1").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    (jepa,) = json.loads(latest.read_text())["methods"]
    assert jepa["world_model"]["reused"] and jepa["world_model"]["path"] == wms["jepa"]["path"]


def test_oracle_planner_reaches_the_goal_and_random_actions_do_not(tmp_path):
    from bench.world_model.encoders import PixelFrameEncoder
    enc = PixelFrameEncoder()  # never used: random and oracle need no world model
    from bench.world_model.train import WorldModelConfig
    res = run_planning_benchmark(enc, enc, WorldModelConfig(), PlanConfig(), episodes=20, methods=("random", "oracle"),
                                 models_dir=tmp_path)
    rnd, oracle = res.methods
    assert oracle.success_rate >= 90, oracle
    assert rnd.success_rate <= oracle.success_rate - 50, (rnd, oracle)
    assert oracle.mean_final_distance < 1.0 < res.initial_distance / 2
    assert not list(tmp_path.iterdir())  # nothing trained


def test_task_list_is_a_pure_function_of_the_seeds():
    env, cfg = EnvConfig().make(), PlanConfig()
    starts, goals = sample_tasks(env, task_seeds(12), cfg)
    again = sample_tasks(env, task_seeds(12), cfg)
    assert torch.equal(starts, again[0]) and torch.equal(goals, again[1])
    one = sample_tasks(env, [7], cfg)  # a task depends on its own seed only, not on the list around it
    assert torch.equal(one[0][0], starts[7]) and torch.equal(one[1][0], goals[7])
    dist = (goals - starts).norm(dim=1)
    assert ((dist >= cfg.min_dist) & (dist <= cfg.max_dist)).all()
    assert len({tuple(s.tolist()) for s in starts}) == 12  # different seeds, different tasks
    lo, hi = env.radius, env.size - env.radius
    assert ((starts >= lo) & (starts <= hi) & (goals >= lo) & (goals <= hi)).all()
    # the random and oracle planners are deterministic given the seed
    from bench.world_model.planning import OraclePlanner
    small = cfg.model_copy(update={"samples": 16, "elites": 4})
    for planner in (None, OraclePlanner(env)):
        a, b = (run_mpc(env, starts, goals, planner, small, seed=3) for _ in range(2))
        assert torch.equal(a, b)


def test_video_backbone_embeds_frames():
    """V-JEPA-style encoders (video ViTs) take a still frame as a one-tubelet clip."""
    from bench.backbones import create_backbone
    from bench.world_model.encoders import BackboneFrameEncoder
    enc = BackboneFrameEncoder(create_backbone("video_vit_tiny", 32), 32, grid=2)
    frames = EnvConfig().make().render(torch.tensor([[5.0, 5.0], [20.0, 12.0]]))
    assert enc(frames).shape == (2, 4, enc.embed_dim)


def _wrapped_encoder_run(tmp):
    """A real run folder whose method's encoder is a wrapper module, not a bench backbone."""
    from bench.config import make_config
    from bench.runner import build_method
    plugin = tmp / "wrapped.py"
    plugin.write_text(textwrap.dedent('''
        from torch import nn
        from bench.augment import ViewSpec
        from methods.base import Method

        class Wrapped(Method):
            name = "wrapped"
            views = [ViewSpec.simclr()]

            def __init__(self, backbone):
                super().__init__(backbone)
                self.wrapper = nn.Sequential(backbone, nn.Identity())

            def training_loss(self, views):
                return self.wrapper(views[0]).mean()

            @property
            def encoder(self):
                return self.wrapper
    '''))
    cfg = make_config(None, method=f"{plugin}:Wrapped", backbone="resnet18", img_size=32, epochs=0)
    run = tmp / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_id": "r", "method": "wrapped", "status": "trained",
                                              "config": cfg.model_dump(mode="json")}))
    torch.save(build_method(cfg).encoder.state_dict(), run / "encoder.pt")
    return str(run)


BAD = {
    # name: (extra argv, or builder(tmp) -> extra argv; text the one-line message must contain)
    "missing run folder": (lambda t: ["--encoder", str(t / "nope")], "neither 'random', 'pixels' nor a run folder"),
    "folder without run.json": (lambda t: ["--encoder", str(t)], "not a readable run folder"),
    "encoder not a backbone": (lambda t: ["--encoder", _wrapped_encoder_run(t)], "not an image (or video) backbone"),
    "unknown planner": (["--encoder", "random", "--methods", "random,mpc"], "unknown planner 'mpc'"),
    "no planner": (["--encoder", "random", "--methods", ","], "unknown planner (none given)"),
    "unknown --set key": (["--encoder", "random", "--set", "wm.stepz=3"], "--set wm.stepz"),
    "unprefixed --set key": (["--encoder", "random", "--set", "horizon=3"], "plan keys are plan.KEY"),
    "bad --set value": (["--encoder", "random", "--set", "plan.elites=99"], "elites 99 > samples 64"),
    "impossible goal distance": (["--encoder", "random", "--set", "plan.min_dist=60", "--set", "plan.max_dist=70"],
                                 "no goal 60.0-70.0 px"),
    "no episodes": (["--encoder", "random", "--episodes", "0"], "--episodes must be at least 1"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_code_2(case, tmp_path, capsys):
    extra, expected = BAD[case]
    work = tmp_path / "work"
    work.mkdir()
    argv = _plan(tmp_path, *(extra(work) if callable(extra) else extra))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert expected in err, err
    assert not (tmp_path / "results").exists() and not (tmp_path / "models").exists()
