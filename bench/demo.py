"""``bench demo``: a random-init baseline and a few methods trained briefly on the embedded data, each probed and
recorded, so a fresh clone shows the whole pipeline in minutes on a CPU.

The policy lives here: which methods (each with its shipped recipe), how many epochs each gets (ViTs cost 4-30x a
resnet18 step on CPU, so fewer), the random-init baseline first, the ResNet stem, the benchmark's crop. The CLI
only parses the options and prints what :func:`run_demo` reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from bench.config import TrainConfig, load_recipe, make_config

if TYPE_CHECKING:  # the parser reads the defaults above: importing this module stays cheap
    from bench.benchmarks import Benchmark
    from bench.records import RunRecord

DEMO_METHODS = ("simclr", "barlow-twins")
ALL_DEMO_METHODS = ("simclr", "barlow-twins", "random-vit", "dino", "ijepa")
#: training epochs of a demo method unless given
DEMO_EPOCHS = 15
#: ViT methods cost 4-30x a resnet18 step on CPU: their demo budget in epochs (the rest use DEMO_EPOCHS)
DEMO_VIT_EPOCHS = {"dino": 3, "ijepa": 8}


@dataclass(frozen=True)
class DemoRun:
    name: str          # as asked (``barlow-twins``)
    recipe: str        # the shipped recipe it trains with (``barlow_twins``)
    config: TrainConfig


def demo_methods(text: str) -> list[str]:
    """``all`` or a comma-separated list of method names."""
    return list(ALL_DEMO_METHODS) if text.strip() == "all" else [m.strip() for m in text.split(",") if m.strip()]


def demo_runs(benchmark: Benchmark, methods: Sequence[str] = DEMO_METHODS, *, epochs: int | None = None,
              seed: int = 0, stem: str = "imagenet") -> list[DemoRun]:
    """The random-init baseline, then each method with its recipe at the benchmark's crop: ``epochs`` each (default
    DEMO_EPOCHS, ViTs DEMO_VIT_EPOCHS; baselines 0), ResNets with ``stem``. Every config is checked (recipe, method,
    backbone options) here, before any data is loaded."""
    from bench.runner import check_config
    runs = []
    for name in ["random", *methods]:
        recipe = name.replace("-", "_")
        cnn = load_recipe(recipe).get("backbone", "resnet18").startswith("resnet")
        n_epochs = 0 if name.startswith("random") else epochs or DEMO_VIT_EPOCHS.get(name, DEMO_EPOCHS)
        cfg = make_config(recipe, epochs=n_epochs, seed=seed, img_size=benchmark.img_size,
                          backbone_kwargs={"stem": stem} if cnn else None)
        check_config(cfg)
        runs.append(DemoRun(name, recipe, cfg))
    return runs


def run_demo(benchmark: Benchmark, runs: Sequence[DemoRun], *, out: str | Path = "bench-demo", progress: bool = True,
             cache_dir: str | None = None, on_data: Callable | None = None, on_run: Callable | None = None,
             on_record: Callable | None = None) -> tuple[list[RunRecord], float]:
    """Load the benchmark's data once, then train + probe + record each run under ``out/results`` (checkpoints in
    ``out/runs``). ``on_data(data)``, ``on_run(run)`` and ``on_record(record)`` report progress. Returns the
    records and the seconds it took."""
    from bench.runner import load_benchmark_data, run_benchmark
    start = time.perf_counter()
    data = load_benchmark_data(benchmark, cache_dir=cache_dir)
    if on_data:
        on_data(data)
    records = []
    for run in runs:
        if on_run:
            on_run(run)
        rec = run_benchmark(run.config, benchmark, results_dir=Path(out) / "results", runs_dir=Path(out) / "runs",
                            recipe=run.recipe, data=data, progress=progress, cache_dir=cache_dir)
        records.append(rec)
        if on_record:
            on_record(rec)
    return records, time.perf_counter() - start
