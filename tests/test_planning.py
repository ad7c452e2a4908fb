"""push-plan-v1 (`bench plan`): the CLI end to end with tiny world models, the CEM + MPC loop with the
true dynamics, fixed task lists, and one-line errors for bad input.
(CEM on a quadratic, the block-causal mask and future leakage are in test_world_model.py.)"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from bench.cli import main
from bench.errors import BenchError, ConfigError
from bench.world_model.plan_report import load_plan_records, plan_markdown
from bench.world_model.plan_spec import PUSH_PLAN_V1, PlanConfig, PlanSpec, plan_spec
from bench.world_model.planning import (BENCHMARK_ID, PLANNERS, MethodResult, PlanResult, run_mpc,
                                        run_planning_benchmark, sample_tasks, task_seeds, write_plan_result)
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
    # tiny settings are another protocol: their own custom-push-plan-<hash8>-v1, never push-plan-v1's folder
    overrides = {p: {k.split(".", 1)[1].split("=")[0]: int(k.split("=")[1]) for k in TINY[1::2] if k.startswith(p)}
                 for p in ("plan", "wm")}
    spec = plan_spec(overrides, episodes=3)
    assert spec.id == f"custom-push-plan-{spec.spec_hash()[:8]}-v1" and spec.spec_hash() != PUSH_PLAN_V1.spec_hash()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [spec.id]
    (path,) = (tmp_path / "results" / spec.id).glob("*.json")
    res = PlanResult.model_validate_json(path.read_text())
    assert res.benchmark == spec.id and res.spec_hash == spec.spec_hash() == res.spec.spec_hash()
    assert res.encoder == "random-vit" and res.task_seeds == [0, 1, 2] and res.plan.steps == 4
    assert [m.method for m in res.methods] == list(PLANNERS)
    for m in res.methods:
        assert 0 <= m.success_rate <= 100 and len(m.final_distances) == 3
        assert (m.world_model is not None) == (m.method in ("pixel", "jepa"))
    wms = {m.method: m.world_model for m in res.methods if m.world_model}
    assert wms["pixel"]["encoder"] == "pixels8" and wms["jepa"]["encoder"] == "random-vit"
    assert not wms["jepa"]["reused"] and wms["jepa"]["config"]["steps"] == 4
    md = (tmp_path / "lb" / spec.id / "leaderboard.md").read_text()
    assert spec.spec_hash() in md and all(f"| random-vit | {p}" in md for p in PLANNERS)
    # a second run with the same encoder and settings loads the saved world model instead of training
    assert main(_plan(tmp_path, "--encoder", "random", "--episodes", "3", "--methods", "jepa", *TINY)) == 0
    latest = max((tmp_path / "results" / spec.id).glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    (jepa,) = json.loads(latest.read_text())["methods"]
    assert jepa["world_model"]["reused"] and jepa["world_model"]["path"] == wms["jepa"]["path"]


def test_oracle_planner_reaches_the_goal_and_random_actions_do_not(tmp_path):
    from bench.world_model.encoders import PixelFrameEncoder
    enc = PixelFrameEncoder()  # never used: random and oracle need no world model
    res = run_planning_benchmark(enc, enc, PlanSpec(episodes=20), methods=("random", "oracle"), models_dir=tmp_path)
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


# ---------------------------------------------------------------- the spec and the leaderboard
def test_spec_hash_is_stable_and_changed_by_an_override():
    assert PUSH_PLAN_V1.id == BENCHMARK_ID == "push-plan-v1"
    assert PUSH_PLAN_V1.spec_hash() == "58b28543c3e8a76c"  # the committed records' protocol: changing it is a v2
    assert plan_spec() is PUSH_PLAN_V1 and plan_spec({"plan": {"horizon": 4}, "wm": {"steps": 1500}}) is PUSH_PLAN_V1
    hashes = {PUSH_PLAN_V1.spec_hash()}
    for overrides, episodes in (({"plan": {"samples": 128}}, 50), ({"wm": {"steps": 500}}, 50),
                                ({"wm": {"env": {"radius": 2.0}}}, 50), ({}, 10)):
        spec = plan_spec(overrides, episodes=episodes)
        h = spec.spec_hash()
        assert spec.id == f"custom-push-plan-{h[:8]}-v1" and h not in hashes, (overrides, episodes)
        hashes.add(h)
        assert plan_spec(overrides, episodes=episodes).spec_hash() == h  # the same overrides, the same id
    with pytest.raises(ConfigError, match=r"--set plan.samples: Input should be greater than or equal to 2"):
        plan_spec({"plan": {"samples": 1}})


def _record(encoder, seed, success, dist, spec=PUSH_PLAN_V1, created="2026-01-01T00:00:00+00:00", l1=None):
    """A hand-made record: planners random and jepa (with a world model of held-out L1 ``l1`` vs copy 0.1)."""
    wm = {"encoder": encoder, "val_after": {"teacher_forcing": l1, "copy_baseline": 0.1}} if l1 is not None else None
    methods = [MethodResult(method="random", success_rate=8.0, mean_final_distance=11.0, median_final_distance=11.0,
                            planning_time_s=0.0, final_distances=[11.0]),
               MethodResult(method="jepa", success_rate=success, mean_final_distance=dist, median_final_distance=dist,
                            planning_time_s=1.0, final_distances=[dist], world_model=wm)]
    return PlanResult(benchmark=spec.id, spec_hash=spec.spec_hash(), run_id=f"r-{encoder}-{seed}-{created[:4]}",
                      encoder=encoder, encoder_key="k", seed=seed, task_seeds=task_seeds(spec.episodes),
                      initial_distance=10.0, plan=spec.plan, world_model_config=spec.wm.model_dump(mode="json"),
                      methods=methods, created_at=created)


def test_leaderboard_aggregates_seeds_per_encoder_and_planner():
    records = [_record("enc-a", 0, 20.0, 5.0, l1=0.05), _record("enc-a", 1, 40.0, 3.0, l1=0.07),
               _record("enc-a", 2, 60.0, 4.0, l1=0.06),
               _record("enc-a", 2, 0.0, 9.0, l1=0.5, created="2025-01-01T00:00:00+00:00"),  # older rerun of seed 2
               _record("enc-b", 0, 50.0, 2.5, l1=0.02)]
    md = plan_markdown(records, BENCHMARK_ID)
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in md.splitlines() if line.startswith("| enc-")}
    # success 20, 40, 60: mean 40, std (ddof=1) 20; distance 5, 3, 4: 4 ± 1; L1 / copy 0.5, 0.7, 0.6: 0.60 ± 0.10
    assert rows[("enc-a", "jepa (enc-a)")] == ["3", "40.0 ± 20.0", "4.00 ± 1.00", "4.00 ± 1.00", "0.60 ± 0.10", "0 1 2"]
    assert rows[("enc-a", "random")] == ["3", "8.0 ± 0.0", "11.00 ± 0.00", "11.00 ± 0.00", "–", "0 1 2"]
    assert rows[("enc-b", "jepa (enc-b)")] == ["1", "50.0", "2.50", "2.50", "0.20", "0"]  # one seed: no std
    assert list(rows) == [("enc-a", "random"), ("enc-a", "jepa (enc-a)"), ("enc-b", "random"), ("enc-b", "jepa (enc-b)")]
    assert f"spec_hash `{PUSH_PLAN_V1.spec_hash()}`" in md and "50 tasks" in md
    other = plan_spec({"plan": {"samples": 128}})
    with pytest.raises(BenchError, match="different specs"):
        plan_markdown([records[0], _record("enc-a", 1, 40.0, 3.0, spec=other).model_copy(
            update={"benchmark": BENCHMARK_ID})], BENCHMARK_ID)


def test_records_go_to_their_benchmark_folder_and_edited_hashes_are_refused(tmp_path):
    custom = plan_spec({"wm": {"steps": 10}})
    write_plan_result(_record("enc-a", 0, 20.0, 5.0), tmp_path)
    write_plan_result(_record("enc-a", 0, 30.0, 5.0, spec=custom), tmp_path)
    assert [r.benchmark for r in load_plan_records(tmp_path, BENCHMARK_ID)] == [BENCHMARK_ID]
    assert [r.spec_hash for r in load_plan_records(tmp_path, custom.id)] == [custom.spec_hash()]
    edited = _record("enc-a", 1, 20.0, 5.0).model_copy(update={"plan": PlanConfig(samples=32)})
    write_plan_result(edited, tmp_path)
    with pytest.raises(BenchError, match="does not match its settings"):
        load_plan_records(tmp_path, BENCHMARK_ID)


def test_committed_records_load_and_the_committed_leaderboard_is_generated_from_them():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    records = load_plan_records(root / "results", BENCHMARK_ID)
    assert len(records) >= 2 and all(r.spec.spec_hash() == PUSH_PLAN_V1.spec_hash() for r in records)
    board = root / "leaderboards" / BENCHMARK_ID
    assert (board / "leaderboard.md").read_text() == plan_markdown(records, BENCHMARK_ID)
    assert sorted(p.name for p in board.iterdir()) == ["leaderboard.md"]  # no stale per-encoder tables
