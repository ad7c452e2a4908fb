"""push-plan-v1: goal-image planning in :class:`~bench.data.moving_shapes.PushEnv` with CEM + MPC.

A task = a start state and a goal state (seeded; the goal is ``min_dist``-``max_dist`` px away).
The planner sees only frames: the goal *image* and, at each step, the current frame. Each step,
:func:`~bench.world_model.cem.cem_plan_batch` searches ``horizon``-step action sequences that
minimise the L1 distance between the world model's predicted final embedding and the goal
image's embedding (every CEM sample of every episode rolled out in one batched call), the first
``execute`` actions run in the true environment, and it re-plans (model-predictive control) for
``steps`` environment steps; near the end the horizon shrinks to the steps left, so the state the plan
aims at is the episode's final one. Success: the final agent position within ``tolerance`` px of the goal.

Planners (rows of the table):

- ``random``: uniform random actions (no model).
- ``oracle``: the true dynamics and the true state distance (an upper bound of the CEM + MPC loop).
- ``pixel``: predictor over downsampled frame pixels (``PixelFrameEncoder``), same transformer size.
- ``jepa``: predictor over the frozen encoder's embeddings (V-JEPA 2-AC style).
"""

from __future__ import annotations

import time
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Callable

import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.data.moving_shapes import PushEnv
from bench.errors import ConfigError
from bench.world_model.cem import cem_plan_batch
from bench.world_model.encoders import FrameEncoder
from bench.world_model.plan_spec import PUSH_PLAN_V1, PlanConfig, PlanSpec, spec_of_record
from bench.world_model.predictor import ActionConditionedPredictor

BENCHMARK_ID = PUSH_PLAN_V1.id
PLANNERS = ("random", "oracle", "pixel", "jepa")


def parse_planners(text: str) -> tuple[str, ...]:
    """``"random,oracle,pixel,jepa"`` -> the planner names (unknown or no names: ConfigError)."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in PLANNERS]
    if bad or not names:
        raise ConfigError(f"unknown planner {', '.join(map(repr, bad)) or '(none given)'}: use a comma-separated "
                          f"subset of {','.join(PLANNERS)}")
    return names


def task_seeds(episodes: int) -> list[int]:
    """The fixed task list of push-plan-v1: seeds 0 .. episodes - 1 (every run plans the same tasks)."""
    return list(range(episodes))


def sample_tasks(env: PushEnv, seeds: list[int], cfg: PlanConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, 2) start and goal states, one pair per seed (a pure function of the seed and the env)."""
    starts, goals = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        start = env.random_states(1, g)[0]
        for _ in range(1000):
            goal = env.random_states(1, g)[0]
            if cfg.min_dist <= float((goal - start).norm()) <= cfg.max_dist:
                break
        else:
            raise ConfigError(f"no goal {cfg.min_dist}-{cfg.max_dist} px from {[round(x, 1) for x in start.tolist()]} "
                              f"fits in the {env.size} px env; change plan.min_dist / plan.max_dist")
        starts.append(start)
        goals.append(goal)
    return torch.stack(starts), torch.stack(goals)


class Planner:
    """What MPC needs from a model: ``observe(states)`` -> what the planner sees of those states
    (an embedding of their rendered frame; the oracle sees the states), and ``final(obs, actions)``
    (E*S, ..., H, A) -> the predicted observation after the actions."""

    name = "planner"

    def observe(self, states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def final(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class WorldModelPlanner(Planner):
    """A frozen frame encoder + an action-conditioned predictor: plans from images only."""

    def __init__(self, env: PushEnv, encoder: FrameEncoder, predictor: ActionConditionedPredictor, name: str,
                 chunk: int = 8192):
        self.env, self.encoder, self.predictor, self.name, self.chunk = env, encoder, predictor.eval(), name, chunk

    def observe(self, states: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.env.render(states))  # (E, N, D)

    @torch.inference_mode()
    def final(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.predictor.rollout(obs[i:i + self.chunk], actions[i:i + self.chunk])[:, -1]
                          for i in range(0, len(obs), self.chunk)])


class OraclePlanner(Planner):
    """The true environment dynamics and the true state: what CEM + MPC reach with a perfect model."""

    name = "oracle"

    def __init__(self, env: PushEnv):
        self.env = env

    def observe(self, states: torch.Tensor) -> torch.Tensor:
        return states

    def final(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.env.rollout(obs, actions)[:, -1]


def run_mpc(env: PushEnv, starts: torch.Tensor, goals: torch.Tensor, planner: Planner | None, cfg: PlanConfig,
            seed: int = 0) -> torch.Tensor:
    """Plan all episodes together; returns the final states (E, 2). ``planner=None``: random actions."""
    g = torch.Generator().manual_seed(seed)
    state = starts.clone()
    e = len(state)
    if planner is None:
        for _ in range(cfg.steps):
            state = env.step(state, torch.rand(e, 2, generator=g) * 2 - 1)
        return state
    goal_obs = planner.observe(goals)
    mean = torch.zeros(e, cfg.horizon, 2)
    done = 0
    while done < cfg.steps:
        obs = planner.observe(state)
        h = min(cfg.horizon, cfg.steps - done)  # shrinking horizon: the plan must end where the episode ends

        def cost(seqs: torch.Tensor) -> torch.Tensor:  # (E, S, H, A) -> (E, S): L1 to the goal observation
            s = seqs.shape[1]
            pred = planner.final(obs.repeat_interleave(s, 0), seqs.flatten(0, 1))
            return (pred - goal_obs.repeat_interleave(s, 0)).abs().flatten(1).mean(1).view(e, s)

        plan = cem_plan_batch(cost, e, h, 2, iters=cfg.iters, samples=cfg.samples, elites=cfg.elites,
                              init_std=cfg.init_std, generator=g, init_mean=mean[:, :h])
        k = min(cfg.execute, h)
        for t in range(k):
            state = env.step(state, plan[:, t])
        done += k
        mean = torch.cat([plan[:, k:], torch.zeros(e, cfg.horizon - h + k, 2)], 1)  # warm start: the rest, shifted
    return state


class MethodResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    success_rate: float             # percent of episodes ending within tolerance of the goal
    mean_final_distance: float      # px, mean over episodes
    median_final_distance: float
    planning_time_s: float          # wall time for all episodes (batched)
    final_distances: list[float]
    world_model: dict[str, Any] | None = None


class PlanResult(BaseModel):
    """One ``bench plan`` run: ``results/<benchmark>/<run_id>.json`` (push-plan-v1 or a custom-push-plan-*)."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    benchmark: str = BENCHMARK_ID
    spec_hash: str | None = None  # None: written before it was recorded (``spec`` rebuilds it)
    run_id: str = Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
    encoder: str
    encoder_key: str
    seed: int
    task_seeds: list[int]
    initial_distance: float
    plan: PlanConfig
    world_model_config: dict[str, Any]
    methods: list[MethodResult]
    git_sha: str | None = None
    env: dict[str, Any] = {}
    hardware: dict[str, Any] = {}
    created_at: str = ""
    wall_time_s: float = 0.0

    @property
    def spec(self) -> PlanSpec:
        """The protocol this record ran (its hash must equal ``spec_hash`` where that is recorded)."""
        return spec_of_record(self.plan, self.world_model_config, self.task_seeds)


def evaluate_planner(name: str, env: PushEnv, starts: torch.Tensor, goals: torch.Tensor, planner: Planner | None,
                     cfg: PlanConfig, seed: int = 0, world_model: dict | None = None) -> MethodResult:
    t0 = time.perf_counter()
    final = run_mpc(env, starts, goals, planner, cfg, seed)
    elapsed = time.perf_counter() - t0
    dist = (final - goals).norm(dim=1)
    return MethodResult(method=name, success_rate=round(100.0 * float((dist <= cfg.tolerance).float().mean()), 2),
                        mean_final_distance=round(float(dist.mean()), 3),
                        median_final_distance=round(float(dist.median()), 3), planning_time_s=round(elapsed, 2),
                        final_distances=[round(float(d), 3) for d in dist], world_model=world_model)


def run_planning_benchmark(encoder: FrameEncoder, pixel_encoder: FrameEncoder, spec: PlanSpec = PUSH_PLAN_V1, *,
                           seed: int = 0, models_dir="runs/push-world-models",
                           cache_dir=None, methods: tuple[str, ...] = ("random", "oracle", "pixel", "jepa"),
                           retrain: bool = False, progress: bool = False,
                           log: Callable[[str], None] | None = None) -> PlanResult:
    """Train (or reuse) the pixel and embedding world models, plan the fixed task list with each
    planner, and return the result (not written; see ``write_plan_result``)."""
    from bench.records import collect_env, collect_hardware, git_sha, new_run_id
    from bench.world_model.train import get_world_model
    log = log or (lambda msg: None)
    cfg, wm_cfg = spec.plan, spec.wm
    parse_planners(",".join(methods))  # unknown names fail before any training
    start_time = time.perf_counter()
    env = wm_cfg.env.make()
    seeds = task_seeds(spec.episodes)
    starts, goals = sample_tasks(env, seeds, cfg)
    results = []
    for name in methods:
        if name == "random":
            results.append(evaluate_planner(name, env, starts, goals, None, cfg, seed))
        elif name == "oracle":
            results.append(evaluate_planner(name, env, starts, goals, OraclePlanner(env), cfg, seed))
        else:  # pixel / jepa: a world model over the pixel baseline's or the frozen encoder's tokens
            enc = pixel_encoder if name == "pixel" else encoder
            log(f"{name} world model ({enc.label}): training or loading from {models_dir}")
            predictor, info, path = get_world_model(enc, wm_cfg, models_dir, cache_dir, retrain, progress)
            info = {**info, "path": str(path)}
            log(f"  held-out L1 after training: teacher forcing {info['val_after']['teacher_forcing']:.4f}, "
                f"rollout {info['val_after']['rollout']:.4f} (copy baseline {info['val_after']['copy_baseline']:.4f}"
                f"; untrained {info['val_before']['teacher_forcing']:.4f})")
            planner = WorldModelPlanner(env, enc, predictor, name)
            results.append(evaluate_planner(name, env, starts, goals, planner, cfg, seed, world_model=info))
        r = results[-1]
        log(f"{name}: success {r.success_rate:.1f}%, mean final distance {r.mean_final_distance:.2f} px "
            f"({r.planning_time_s:.1f} s)")
    return PlanResult(benchmark=spec.id, spec_hash=spec.spec_hash(),
                      run_id=new_run_id(f"plan-{encoder.label.split(':')[0]}", seed), encoder=encoder.label,
                      encoder_key=encoder.key, seed=seed, task_seeds=seeds,
                      initial_distance=round(float((starts - goals).norm(dim=1).mean()), 3), plan=cfg,
                      world_model_config=wm_cfg.model_dump(mode="json"), methods=results,
                      git_sha=git_sha(Path(__file__).resolve().parents[2]), env=collect_env(), hardware=collect_hardware(),
                      created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      wall_time_s=round(time.perf_counter() - start_time, 2))


def write_plan_result(result: PlanResult, results_dir="results"):
    """``<results_dir>/<benchmark>/<run_id>.json``, atomically, never replacing an existing file."""
    from bench.io import atomic_write_json
    return atomic_write_json(Path(results_dir) / result.benchmark / f"{result.run_id}.json",
                             result.model_dump(mode="json"), exclusive=True)


PLAN_COLUMNS = ("planner", "success %", "mean final dist (px)", "median final dist (px)", "planning time (s)",
                "world-model held-out L1")


def plan_rows(result: PlanResult) -> list[list[str]]:
    """One row of table cells per planner (held-out L1: teacher forcing, and as a fraction of the
    copy baseline "nothing moves", which puts pixel and embedding spaces on one scale)."""
    rows = []
    for m in result.methods:
        l1 = "-"
        if m.world_model:
            after = m.world_model["val_after"]
            l1 = f"{after['teacher_forcing']:.4f} ({after['teacher_forcing'] / max(after['copy_baseline'], 1e-12):.2f}x copy)"
        name = m.method + (f" ({m.world_model['encoder']})" if m.world_model else "")
        rows.append([name, f"{m.success_rate:.1f}", f"{m.mean_final_distance:.2f}", f"{m.median_final_distance:.2f}",
                     f"{m.planning_time_s:.1f}", l1])
    return rows
