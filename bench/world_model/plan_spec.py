"""The push-plan-v1 protocol as data: the task list, the CEM + MPC planner and the world models' training, hashed.

``--set plan.KEY=V`` / ``wm.KEY=V`` overrides (or another ``--episodes``) that change the protocol make a
``custom-push-plan-<hash8>-v1`` benchmark: its records and leaderboard never mix with push-plan-v1's.
"""

from __future__ import annotations


from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import ConfigError
from bench.versioned_spec import VersionedSpec
from bench.world_model.train import EnvConfig, WorldModelConfig


class PlanConfig(BaseModel):
    """The planning protocol (task distribution, MPC and CEM settings)."""

    model_config = ConfigDict(extra="forbid")
    min_dist: float = Field(6.0, ge=0)   # start-goal distance range, px (the agent moves <= max_step = 3 px per step)
    max_dist: float = Field(15.0, gt=0)
    tolerance: float = Field(3.0, gt=0)  # success: final position within this many px of the goal (the agent's radius)
    steps: int = Field(10, ge=1)         # environment steps per episode
    horizon: int = Field(4, ge=1, le=32)  # CEM plans this many actions ahead (fewer near the episode's end)
    execute: int = Field(1, ge=1)        # actions executed per plan before re-planning
    iters: int = Field(3, ge=1)          # CEM iterations / samples / elites per plan
    samples: int = Field(64, ge=2)
    elites: int = Field(8, ge=1)
    init_std: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "PlanConfig":
        if self.min_dist > self.max_dist:
            raise ValueError(f"min_dist {self.min_dist} > max_dist {self.max_dist}")
        if self.elites > self.samples:
            raise ValueError(f"elites {self.elites} > samples {self.samples}")
        return self


class PlanSpec(VersionedSpec):
    """One planning benchmark version: ``episodes`` tasks (seeds 0 .. episodes - 1), the planner settings and
    the world models' training settings. ``spec_hash`` fingerprints all three."""

    name: str = "push-plan"
    version: int = 1
    description: str = ("goal-image planning in PushEnv (32 px, 50 fixed tasks): CEM + MPC with an action-conditioned "
                        "world model on a frozen encoder's embeddings vs on pixels, random actions and the true "
                        "dynamics; success within 3 px after 10 steps")
    episodes: int = Field(50, ge=1)
    plan: PlanConfig = PlanConfig()
    wm: WorldModelConfig = WorldModelConfig()


PUSH_PLAN_V1 = PlanSpec()


def plan_spec(overrides: dict | None = None, episodes: int = PUSH_PLAN_V1.episodes) -> PlanSpec:
    """push-plan-v1, or with ``{"plan": {...}, "wm": {...}}`` overrides (``--set plan.KEY=V`` / ``wm.KEY=V`` /
    ``wm.env.KEY=V``) or other ``episodes`` that change it a ``custom-push-plan-<hash8>-v1``; an unknown key or a
    bad value is one ConfigError line."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {"plan", "wm"})
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: plan keys are plan.KEY (PlanConfig), world-model keys wm.KEY "
                          f"or wm.env.KEY (WorldModelConfig)")
    parts = {}
    for prefix, cls in (("plan", PlanConfig), ("wm", WorldModelConfig)):
        try:
            parts[prefix] = cls(**(overrides.get(prefix) or {}))
        except ValidationError as e:
            err = e.errors()[0]
            loc, msg = ".".join(str(x) for x in (prefix, *err["loc"])), err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                fields = (cls if len(err["loc"]) == 1 else EnvConfig).model_fields
                msg = f"unknown key (known: {', '.join(fields)})"
            elif err["loc"]:
                msg += f" (got {err.get('input')!r})"
            raise ConfigError(f"--set {loc}: {msg}" if err["loc"] else f"bad --set {prefix}.*: {msg}") from None
    if episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    spec = PlanSpec(episodes=episodes, **parts)
    changed = {k: v for k, v in overrides.items() if v}
    if episodes != PUSH_PLAN_V1.episodes:
        changed["episodes"] = episodes
    return spec.variant_of(PUSH_PLAN_V1, changed)


def spec_of_record(plan: PlanConfig, world_model_config: dict, task_seeds: list[int]) -> PlanSpec:
    """The protocol a record ran, rebuilt from what it stores (records written before ``spec_hash`` existed too)."""
    return PlanSpec(episodes=len(task_seeds), plan=plan, wm=WorldModelConfig(**world_model_config))
