"""Reference records: the setups a benchmark's committed leaderboard shows, and ``bench reference``,
which trains, probes and records every (setup, seed) that has no record yet.

Idempotent and resumable: a (setup, seed) counts as done when ``results/<benchmark>/`` holds an ok or
collapsed record with the same recipe, seed and config; an interrupted run of it under ``runs/`` is
continued from its last checkpoint (or only probed, when its encoder is saved) instead of restarted.
So after a crash, a preemption or a new machine, the same command picks up where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.benchmarks import Benchmark
from bench.config import TrainConfig, budget_config, make_config, recipe_label
from bench.errors import ConfigError, PluginError, TrainingError
from bench.records import load_errata, load_records, setup_hash
from bench.runs import lock_holder


@dataclass(frozen=True)
class Setup:
    """One leaderboard row: a shipped recipe (``bench run --recipe``), or a plugin file with its recipe
    trained on the benchmark's budget (``bench submit``), plus config overrides."""

    recipe: str
    plugin: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, benchmark: Benchmark, seed: int) -> TrainConfig:
        if self.plugin:
            return budget_config(benchmark, self.plugin, self.recipe, seed=seed, **self.overrides).config
        return make_config(self.recipe, seed=seed, **self.overrides)

    @property
    def label(self) -> str:
        return self.plugin or recipe_label(self.recipe) or self.recipe


#: benchmark id -> the setups of its reference leaderboard
REFERENCE: dict[str, list[Setup]] = {
    "imagenette64-v1": [
        Setup("simclr"), Setup("barlow_twins"), Setup("byol"), Setup("mocov3"), Setup("dino"), Setup("ibot"),
        Setup("ijepa"), Setup("mae"),
        Setup("random"), Setup("random_vit"), Setup("random_vit_cls"),
        Setup("naive_siamese", overrides={"stop_on_collapse": True}),
        Setup("examples/vicreg.yaml", plugin="examples/vicreg.py"),
    ],
    "moving-shapes-v1": [Setup("vjepa"), Setup("random_video")],
    "moving-shapes-v2": [Setup("vjepa"), Setup("random_video")],
}


def reference_setups(benchmark_id: str) -> list[Setup]:
    if benchmark_id not in REFERENCE:
        raise ConfigError(f"no reference setups for {benchmark_id!r} (defined for: {', '.join(sorted(REFERENCE))})")
    return REFERENCE[benchmark_id]


def _setup_key(recipe: str | None, seed: int, config: dict) -> tuple:
    """What makes two runs the same reference run: recipe, seed and the rest of the config (hashed as the
    leaderboard groups seeds)."""
    return recipe_label(recipe), seed, setup_hash(config)


def missing_runs(benchmark: Benchmark, seeds: list[int], results_dir: str | Path = "results",
                 only: list[str] | None = None) -> list[tuple[Setup, int, TrainConfig]]:
    """The (setup, seed, config) of every reference run without an ok / collapsed record, in setup order (a record
    that ``results_dir/errata.yaml`` excludes does not count); ``only``: setup labels to consider (the order given
    there is the order they run in)."""
    excluded = {run_id for run_id, e in load_errata(results_dir).items() if e.exclude}
    records = [r for r in load_records(results_dir, benchmark.id)
               if r.status in ("ok", "collapsed") and r.run_id not in excluded] \
        if (Path(results_dir) / benchmark.id).is_dir() else []
    done = {_setup_key(r.recipe, r.seed, r.config) for r in records}
    out = []
    for setup in _select(reference_setups(benchmark.id), only):
        for seed in seeds:
            cfg = setup.config(benchmark, seed)
            if _setup_key(setup.recipe, seed, cfg.model_dump(mode="json")) not in done:
                out.append((setup, seed, cfg))
    return out


def _select(setups: list[Setup], only: list[str] | None) -> list[Setup]:
    if not only:
        return setups
    by_label = {s.label: s for s in setups}
    unknown = [o for o in only if o not in by_label]
    if unknown:
        raise ConfigError(f"no reference setup {', '.join(map(repr, unknown))} (setups: {', '.join(by_label)})")
    return [by_label[o] for o in only]


def interrupted_run(cfg: TrainConfig, recipe: str | None, benchmark: Benchmark, runs_dir: str | Path = "runs"
                    ) -> Path | None:
    """The newest run folder of exactly this recipe and config (seed included) with a checkpoint or an encoder."""
    want = cfg.model_dump(mode="json")
    root = Path(runs_dir) / benchmark.id
    for run_dir in sorted(root.glob("*/"), reverse=True) if root.is_dir() else []:
        try:
            info = json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError):
            continue
        same = info.get("config") == want and recipe_label(info.get("recipe")) == recipe_label(recipe)
        if same and ((run_dir / "encoder.pt").exists() or (run_dir / "checkpoints" / "last.ckpt").exists()):
            return run_dir
    return None


def run_missing(benchmark: Benchmark, todo: list[tuple[Setup, int, TrainConfig]], *,
                results_dir: str | Path = "results", runs_dir: str | Path = "runs", progress: bool = True,
                data_root: str | None = None, cache_dir: str | None = None, imagenet_root: str | None = None,
                log=print) -> tuple[int, list[str]]:
    """Train / resume / probe the ``todo`` runs of :func:`missing_runs`, one after another. Every run's method is
    resolved first, before any data is looked up. A run that fails (NaN loss, a broken plugin: its failed record is
    written, or it never starts) does not stop the others; an interruption (SIGTERM, Ctrl-C) does; an interrupted
    run that another process is training now is skipped. Returns (runs recorded, names of the failed runs)."""
    from bench.runner import check_config, load_benchmark_data
    failed, runnable = [], []
    for i, (setup, seed, cfg) in enumerate(todo, 1):
        try:
            check_config(cfg)  # a plugin file that does not import, an unknown backbone option, ...
            runnable.append((i, setup, seed, cfg))
        except (ConfigError, PluginError) as e:
            log(f"[{i}/{len(todo)}] {setup.label} seed {seed} failed: {e}")
            failed.append(f"{setup.label} seed {seed}")
    if not runnable:
        return 0, failed
    data = load_benchmark_data(benchmark, data_root, cache_dir, imagenet_root)
    recorded = 0
    for i, setup, seed, cfg in runnable:
        run_dir = interrupted_run(cfg, setup.recipe, benchmark, runs_dir)
        name = f"{setup.label} seed {seed}"
        if run_dir is not None and (pid := lock_holder(run_dir)) is not None:
            log(f"[{i}/{len(todo)}] {name}: skipped, {run_dir} is being trained by another process (pid {pid})")
            continue
        log(f"[{i}/{len(todo)}] {name}: " + ("new run" if run_dir is None else f"continuing {run_dir}"))
        try:
            _produce(setup, cfg, run_dir, benchmark, data, results_dir=results_dir, runs_dir=runs_dir,
                     progress=progress, cache_dir=cache_dir)
            recorded += 1
        except (TrainingError, PluginError) as e:
            log(f"[{i}/{len(todo)}] {name} failed: {e}")
            failed.append(name)
    return recorded, failed


def _produce(setup: Setup, cfg: TrainConfig, run_dir: Path | None, benchmark: Benchmark, data, *,
             results_dir: str | Path, runs_dir: str | Path, progress: bool, cache_dir: str | None) -> None:
    """A new run (plugins smoke-tested first), or an interrupted one continued and probed."""
    from bench.runner import probe_run, run_benchmark, train_run
    common = dict(results_dir=results_dir, data=data, cache_dir=cache_dir)
    if run_dir is None:
        if setup.plugin:
            from bench.submit import smoke_test
            smoke_test(cfg, data.train.images)
        run_benchmark(cfg, benchmark, runs_dir=runs_dir, recipe=setup.recipe, progress=progress, **common)
        return
    if not (run_dir / "encoder.pt").exists():
        train_run(None, benchmark, runs_dir=runs_dir, progress=progress, resume=run_dir, **common)
    probe_run(run_dir, benchmark, **common)
