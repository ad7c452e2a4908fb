"""The ``bench`` command: a thin layer over bench.runner, bench.leaderboard and the registries.
Every BenchError becomes one red line and exit code 2 (add --debug for the traceback)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from bench.errors import BenchError

DEMO_METHODS = ("simclr", "barlow-twins")
ALL_DEMO_METHODS = ("simclr", "barlow-twins", "random-vit", "dino", "ijepa")
#: ViT methods cost 4-30x a resnet18 step on CPU: their demo budget in epochs (the rest use --epochs)
DEMO_VIT_EPOCHS = {"dino": 3, "ijepa": 8}


def _quiet_lightning() -> None:
    os.environ.setdefault("LITLOGGER_DISABLE_TIPS", "1")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|LitLogger|does not have many workers).*")


def _console():
    from rich.console import Console
    return Console()


# ---------------------------------------------------------------- shared options
def _add_data_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", default="imagenette64-v1",
                   help="benchmark id NAME-vN (see `bench benchmarks`); fixes data, eval resolution and probe protocol")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="run the benchmark's protocol on another dataset, e.g. imagefolder:PATH "
                        "(results go under custom-<name>-v1, never mixed with the named benchmark)")
    p.add_argument("--data-root", default=None,
                   help="folder holding named datasets such as imagenette64 (default: $BENCH_DATA_ROOT or ../shared/datasets)")
    p.add_argument("--cache-dir", default=None,
                   help="decoded-image and feature cache (default: $BENCH_CACHE_DIR or ~/.cache/ssl-bench)")


def _add_train_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=None, help="method name, module:Class or path/to/plugin.py[:Class] (see `bench methods`)")
    p.add_argument("--recipe", default=None,
                   help="recipe name under recipes/ or a YAML path (default: the recipe named like the method, if any)")
    p.add_argument("--backbone", default=None, help="resnet18 | resnet50 | vit_tiny | vit_small ...")
    p.add_argument("--stem", default=None, choices=["imagenet", "small", "cifar"],
                   help="ResNet stem: small = 3x3/1 conv + max-pool (32-64 px), cifar = 3x3/1 conv, no pool")
    p.add_argument("--img-size", type=int, default=None, help="training crop size in pixels")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (0 = evaluate the initial weights)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (each gives one view per ViewSpec)")
    p.add_argument("--lr", type=float, default=None, help="base learning rate for a batch of 256 (scaled linearly)")
    p.add_argument("--optimizer", default=None, choices=["lars", "sgd", "adamw"], help="optimizer")
    p.add_argument("--seed", type=int, default=None, help="seed for weights, data order and augmentation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (YAML value), e.g. --set weight_decay=1e-4 --set method_kwargs.temperature=0.5")
    p.add_argument("--stop-on-collapse", action="store_true", help="stop training when the collapse monitors fire")
    p.add_argument("--runs-dir", default="runs", help="where checkpoints, logs and encoders go")


def _config_from_args(args):
    import yaml
    from bench.config import available_recipes, make_config

    recipe = args.recipe
    if recipe is None and args.method:
        guess = args.method.replace("-", "_")
        recipe = guess if guess in available_recipes() else None
    if recipe is None and not args.method:
        raise BenchError("give --method (see `bench methods`) or --recipe (see recipes/)")
    overrides: dict = {"method": args.method, "backbone": args.backbone, "img_size": args.img_size,
                       "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                       "optimizer": args.optimizer, "seed": args.seed,
                       "stop_on_collapse": True if args.stop_on_collapse else None}
    if args.stem:
        overrides["backbone_kwargs"] = {"stem": args.stem}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise BenchError(f"--set expects KEY=VALUE, got {item!r}")
        value = yaml.safe_load(value)
        if "." in key:
            outer, inner = key.split(".", 1)
            overrides.setdefault(outer, {})
            overrides[outer] = {**(overrides[outer] or {}), inner: value}
        else:
            overrides[key] = value
    return make_config(recipe, **overrides), recipe


# ---------------------------------------------------------------- commands
def cmd_methods(args) -> int:
    from methods import available_methods
    from rich.table import Table
    table = Table("method", "views", "trainable", "defined in")
    for name, cls in available_methods().items():
        table.add_row(name, str(len(cls.views)), "yes" if cls.trainable else "no (baseline)", cls.__module__)
    _console().print(table)
    return 0


def cmd_benchmarks(args) -> int:
    from bench.benchmarks import available_benchmarks
    from rich.table import Table
    table = Table("benchmark", "data", "eval px", "headline", "description")
    for b in available_benchmarks():
        table.add_row(b.id + (f" (superseded by {b.superseded_by})" if b.superseded_by else ""), b.data,
                      str(b.img_size), b.headline, b.description)
    _console().print(table)
    return 0


def _print_record(rec) -> None:
    s = rec.scores
    cells = "  ".join(f"{k}={v:.1f}" for k, v in s.items())
    _console().print(f"[bold]{rec.method}[/] seed {rec.seed} [{rec.status}]  {cells}  "
                     f"({rec.wall_time_s:.0f}s, {rec.images_seen} views)  -> {rec.run_id}")


def _benchmark(args):
    from bench.benchmarks import adhoc_benchmark, get_benchmark
    return adhoc_benchmark(args.data, base=args.benchmark) if args.data else get_benchmark(args.benchmark)


def cmd_run(args) -> int:
    from bench.runner import run_benchmark
    cfg, recipe = _config_from_args(args)
    bench = _benchmark(args)
    rec = run_benchmark(cfg, bench, results_dir=args.results, runs_dir=args.runs_dir, recipe=recipe,
                        progress=not args.no_progress, data_root=args.data_root, cache_dir=args.cache_dir)
    _print_record(rec)
    return 0


def cmd_train(args) -> int:
    from bench.runner import train_run
    cfg, recipe = (None, None) if args.resume else _config_from_args(args)
    bench = _benchmark(args)
    run_dir = train_run(cfg, bench, runs_dir=args.runs_dir, recipe=recipe, resume=args.resume,
                        progress=not args.no_progress, data_root=args.data_root, cache_dir=args.cache_dir)
    _console().print(f"trained encoder saved in {run_dir}  (evaluate: bench probe {run_dir} --benchmark {bench.id})")
    return 0


def cmd_probe(args) -> int:
    from bench.runner import probe_run
    rec = probe_run(args.run_dir, _benchmark(args), results_dir=args.results,
                    data_root=args.data_root, cache_dir=args.cache_dir)
    _print_record(rec)
    return 0


def _publish_leaderboard(bench_id: str, headline: str, results, out, formats: tuple[str, ...]) -> list[Path]:
    """Write the leaderboard files and print the markdown table (records read and aggregated once)."""
    from bench.leaderboard import build_leaderboard, render_leaderboard, save_leaderboard
    from bench.records import load_records
    df = build_leaderboard(load_records(results, bench_id), bench_id, headline=headline)
    paths = save_leaderboard(df, bench_id, out, formats, results)
    print(render_leaderboard(df, "md", title=bench_id))
    return paths


def cmd_leaderboard(args) -> int:
    from bench.benchmarks import get_benchmark
    from bench.records import load_records
    from bench.errors import ConfigError
    try:
        bench = get_benchmark(args.benchmark)
        bench_id, headline = bench.id, bench.headline
    except ConfigError:
        if not load_records(args.results, args.benchmark):  # ad-hoc (custom-...) ids only need records
            raise
        bench_id, headline = args.benchmark, "linear_top1"
    paths = _publish_leaderboard(bench_id, headline, args.results, args.out, tuple(args.format))
    _console().print("written: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_demo(args) -> int:
    """Train each demo method briefly on the embedded data, probe it and a random init, print the table."""
    from bench.benchmarks import get_benchmark
    from bench.config import load_recipe, make_config
    from bench.runner import load_benchmark_data, run_benchmark

    console = _console()
    bench = get_benchmark(args.benchmark)
    start = time.perf_counter()
    data = load_benchmark_data(bench, cache_dir=args.cache_dir)
    console.print(f"[bold]ssl-bench demo[/] on {bench.id}: {len(data.train)} train / {len(data.eval)} val images, "
                  f"{len(data.train.classes)} classes, {bench.img_size} px")
    results, runs = Path(args.out) / "results", Path(args.out) / "runs"
    methods = list(ALL_DEMO_METHODS) if args.methods == "all" else \
        [m.strip() for m in args.methods.split(",") if m.strip()]
    for name in ["random", *methods]:
        recipe = name.replace("-", "_")
        base = load_recipe(recipe)
        cnn = base.get("backbone", "resnet18").startswith("resnet")
        epochs = 0 if name.startswith("random") else args.epochs or DEMO_VIT_EPOCHS.get(name, 15)
        cfg = make_config(recipe, epochs=epochs, seed=args.seed, img_size=bench.img_size,
                          backbone_kwargs={"stem": args.stem} if cnn else None)
        console.rule(f"{name} ({cfg.epochs} epochs)")
        rec = run_benchmark(cfg, bench, results_dir=results, runs_dir=runs, recipe=recipe, data=data,
                            progress=not args.no_progress, cache_dir=args.cache_dir)
        _print_record(rec)
    console.rule("leaderboard")
    _publish_leaderboard(bench.id, bench.headline, results, Path(args.out) / "leaderboards", ("md", "csv"))
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s; records under {results}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="ssl-bench: train SSL methods, probe frozen encoders, "
                                     "build versioned leaderboards.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train SimCLR + Barlow Twins briefly on the embedded data and print a leaderboard")
    p.add_argument("--benchmark", default="imagenette-mini-v1", help="benchmark to run the demo on")
    p.add_argument("--methods", default=",".join(DEMO_METHODS),
                   help=f"comma-separated methods (each needs a recipe), or 'all' = {','.join(ALL_DEMO_METHODS)}")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs per method (default: 15, ViTs {DEMO_VIT_EPOCHS})")
    p.add_argument("--stem", default="imagenet", choices=["imagenet", "small", "cifar"], help="ResNet stem for the demo")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--out", default="bench-demo", help="folder for the demo's results, runs and leaderboards")
    p.add_argument("--cache-dir", default=None, help="decoded-image and feature cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="train + probe + write one run record")
    _add_train_opts(p)
    _add_data_opts(p)
    p.add_argument("--results", default="results", help="folder of run records")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train only; saves encoder.pt + run.json in a run folder")
    _add_train_opts(p)
    _add_data_opts(p)
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run folder from its last checkpoint (its own config is used)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("probe", aliases=["eval"], help="probe a trained run folder's frozen encoder and write its record")
    p.add_argument("run_dir", help="run folder written by `bench train` (holds run.json + encoder.pt)")
    _add_data_opts(p)
    p.add_argument("--results", default="results", help="folder of run records")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("methods", help="list registered methods")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("benchmarks", help="list benchmark versions")
    p.set_defaults(func=cmd_benchmarks)

    p = sub.add_parser("leaderboard", help="aggregate one benchmark version's records into tables")
    p.add_argument("benchmark", help="benchmark id NAME-vN")
    p.add_argument("--results", default="results", help="folder of run records")
    p.add_argument("--out", default="leaderboards", help="output folder (a sub-folder per benchmark id)")
    p.add_argument("--format", nargs="+", default=["md", "csv"], choices=["md", "csv", "tex"], help="formats to write")
    p.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_lightning()
    try:
        return args.func(args)
    except BenchError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # disk full, permissions, ... anywhere: one line naming the file
        if args.debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
