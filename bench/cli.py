"""The ``bench`` command: a thin layer over the public API (``bench.train`` for run / train, ``bench.evaluate``
for probe / eval), bench.leaderboard and the registries: it parses the options, passes them to the library as
arguments and prints what comes back. Every BenchError becomes one red line and exit code 2 (add --debug for
the traceback)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

from bench.console import one_line_warnings, out, print_table, rule, warn
from bench.errors import BenchError, ConfigError, TrainingError


def _quiet_lightning() -> None:
    os.environ.setdefault("LITLOGGER_DISABLE_TIPS", "1")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|LitLogger|does not have many workers).*")
    one_line_warnings()


# ---------------------------------------------------------------- shared options
def _add_data_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", default=None,
                   help="benchmark id NAME-vN (see `bench benchmarks`); fixes data, eval resolution and probe protocol "
                        "(default: imagenette64-v1; with a video --data: the latest moving-shapes)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="run the benchmark's protocol on another dataset, e.g. imagefolder:PATH, videofolder:PATH or "
                        "moving-shapes:n_train=N,n_val=M (results go under custom-<name>-v1, never mixed with the "
                        "named benchmark)")
    p.add_argument("--data-root", default=None,
                   help="folder holding named datasets such as imagenette64 (default: $BENCH_DATA_ROOT or ../shared/datasets)")
    p.add_argument("--imagenet-root", default=None, metavar="PATH",
                   help="local ImageNet (PATH/train/<wnid>/*.JPEG, PATH/val/<wnid>/*.JPEG) for the imagenet, imagenet100, "
                        "imagenette and imagewoof datasets (default: $BENCH_IMAGENET_ROOT)")
    p.add_argument("--datasets-root", default=None, metavar="PATH",
                   help="folder of the local torchvision dataset copies that tv:NAME specs and the transfer benchmarks "
                        "read (cifar-10-batches-py/, flowers-102/, dtd/, ...; see docs/transfer.md; default: "
                        "$BENCH_DATASETS_ROOT)")
    p.add_argument("--cache-dir", default=None,
                   help="decoded-image and feature cache (default: $BENCH_CACHE_DIR or ~/.cache/ssl-bench)")
    _add_decode_opts(p)


def _add_decode_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decode-workers", type=int, default=None, metavar="N",
                   help="processes that decode a split into the cache on first use (default: the usable cores)")
    p.add_argument("--cache-budget", type=float, default=None, metavar="GB",
                   help="an image split not yet cached whose decoded array would exceed GB (10^9 bytes) is streamed "
                        "instead: its JPEG bytes packed once, decoded per batch, training crops taken from the full "
                        "images (default: 32; 0: stream every such split; see docs/data.md)")


def _add_suite_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default=None, metavar="SUITE-vN",
                   help="score the encoder on every benchmark of a suite (see `bench benchmarks`), one record each; "
                        "benchmarks already recorded for it are skipped, so a killed suite continues")
    p.add_argument("--allow-missing", action="store_true",
                   help="with --suite: skip the datasets that are not present instead of stopping (no aggregate)")


def _datasets_root(args) -> str | None:
    """--datasets-root, else $BENCH_DATASETS_ROOT (read here: the library takes the folder as an argument)."""
    return getattr(args, "datasets_root", None) or os.environ.get("BENCH_DATASETS_ROOT") or None


def _add_batch_opts(p: argparse.ArgumentParser) -> None:
    """Options of the commands that train several runs and rewrite a leaderboard (submit, reference)."""
    p.add_argument("--data-root", default=None, help="folder holding named datasets (default: $BENCH_DATA_ROOT "
                   "or ../shared/datasets)")
    p.add_argument("--imagenet-root", default=None, metavar="PATH",
                   help="local ImageNet for the ImageNet benchmarks (default: $BENCH_IMAGENET_ROOT)")
    p.add_argument("--cache-dir", default=None, help="decoded-image and feature cache")
    _add_decode_opts(p)
    p.add_argument("--results", default="results", help="folder of run records")
    p.add_argument("--leaderboards", default="leaderboards", help="folder of leaderboards (a sub-folder per benchmark)")
    p.add_argument("--runs-dir", default="runs", help="where checkpoints and encoders go")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_train_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=None, help="method name, module:Class or path/to/plugin.py[:Class] (see `bench methods`)")
    p.add_argument("--recipe", default=None,
                   help="recipe name under recipes/ or a YAML path (default: the recipe named like the method, if any)")
    p.add_argument("--backbone", default=None, help="resnet18 | resnet50 | vit_tiny | vit_small | video_vit_tiny (clips) ...")
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
    p.add_argument("--devices", type=int, default=None, help="processes (GPUs) per node; --batch-size stays the "
                   "global batch, split over all processes (see docs/scaling.md)")
    p.add_argument("--nodes", type=int, default=None, help="number of nodes (SLURM srun, torchrun or NODE_RANK)")
    p.add_argument("--strategy", default=None, choices=["auto", "ddp", "fsdp"], help="Lightning strategy "
                   "(auto = ddp with more than one device; fsdp needs GPUs)")
    p.add_argument("--slurm", default=None, metavar="partition=P,KEY=VALUE...",
                   help="submit this command as a SLURM job (submitit) and return: --nodes x --devices tasks, one "
                        "per GPU, requeued with --resume at the time limit; keys: partition, time (minutes, 720), "
                        "gpus_per_node, cpus_per_task (8), mem_gb, account, qos, constraint, name")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")


def _run_config(args, bench):
    """The options as config overrides -> bench.config.run_config (recipe or the benchmark's budget, provenance)."""
    from bench.config import run_config
    overrides: dict = {"backbone": args.backbone, "img_size": args.img_size,
                       "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                       "optimizer": args.optimizer, "seed": args.seed,
                       "stop_on_collapse": True if args.stop_on_collapse else None,
                       "devices": args.devices, "num_nodes": args.nodes, "strategy": args.strategy,
                       "compile": True if args.compile else None}
    if args.stem:
        overrides["backbone_kwargs"] = {"stem": args.stem}
    return run_config(bench, args.method, args.recipe, **_set_overrides(args.set, overrides))


def _checked(resolved):
    """Check the config without data (method, backbone options), then print its one-line summary and notes (on
    rank 0 only: the DDP launcher starts this command again on every other rank)."""
    from bench.distributed import is_worker_rank
    from bench.runner import check_config
    check_config(resolved.config)
    if not is_worker_rank(resolved.config.world_size):
        for line in (resolved.summary(), *resolved.notes()):
            print(line, flush=True)
    return resolved


def _set_overrides(items: list[str], overrides: dict | None = None, flag: str = "--set") -> dict:
    """``--set KEY=VALUE`` items (YAML values); a dotted key nests, ``a.b.c=V`` -> ``{"a": {"b": {"c": V}}}``
    (``method_kwargs.temperature``, ``wm.env.size``). A malformed value, or a key that nests under a value, is
    one ConfigError line."""
    import yaml
    overrides = dict(overrides or {})
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        *outer, last = key.split(".")
        if not all(outer) or not last:
            raise ConfigError(f"{flag} {item!r}: empty key part in {key!r} (KEY or A.B=VALUE)")
        node = overrides
        for depth, part in enumerate(outer):  # copy each level: the caller's dicts are never changed
            child = node.get(part)
            if child is not None and not isinstance(child, dict):
                raise ConfigError(f"{flag} {item!r}: {'.'.join(outer[:depth + 1])} is a single value "
                                  f"({child!r}), not a mapping of keys; set it with {'.'.join(outer[:depth + 1])}=VALUE")
            node[part] = child = dict(child or {})
            node = child
        try:
            node[last] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{flag} {item!r}: the value {value!r} is not valid YAML ({problem})") from None
    return overrides


# ---------------------------------------------------------------- commands
def cmd_methods(args) -> int:
    from methods import available_methods, method_description
    print_table(("method", "views", "trainable", "defined in", "description"),
                [(name, len(cls.views), "yes" if cls.trainable else "no (baseline)", cls.__module__,
                  method_description(cls)) for name, cls in available_methods().items()])
    return 0


def cmd_benchmarks(args) -> int:
    from bench.benchmarks import available_benchmarks
    from bench.benchmarks.suites import available_suites
    print_table(("benchmark", "data", "eval px", "headline", "description"),
                [(b.id + (f" (superseded by {b.superseded_by})" if b.superseded_by else ""), b.data,
                  b.img_size, b.headline, b.description) for b in available_benchmarks()])
    print_table(("suite", "benchmarks", "aggregates", "description"),
                [(s.id, " ".join(s.benchmarks), ", ".join(s.scores), s.description) for s in available_suites()],
                title="suites (bench eval --model SPEC --suite SUITE-vN; bench leaderboard SUITE-vN)")
    from bench.futures.spec import FUTURES_V1
    from bench.world_model.plan_spec import PUSH_PLAN_V1
    print_table(("benchmark", "command", "spec_hash", "description"),
                [(s.id, f"bench {cmd}", s.spec_hash(), s.description)
                 for s, cmd in ((FUTURES_V1, "futures"), (PUSH_PLAN_V1, "plan"))],
                title="experiments with a command of their own (--set KEY=V: a custom-* id)")
    return 0


def _print_record(rec) -> None:
    s = rec.scores
    cells = "  ".join(f"{k}={v:.1f}" for k, v in s.items())
    out(f"{rec.method} seed {rec.seed} [{rec.status}]  {cells}  "
        f"({rec.wall_time_s:.0f}s" + (f", {rec.images_seen} images, {rec.views_seen} views" if rec.origin == "trained"
                                      else ", external encoder") + f")  -> {rec.run_id}")


def _benchmark(args):
    from bench.benchmarks import benchmark_for
    return benchmark_for(args.benchmark, args.data)


def _data_options(args) -> list[str]:
    """The data options given, as a command line takes them again (the probe hint, the SLURM requeue)."""
    out: list[str] = []
    for flag, value in (("--benchmark", args.benchmark), ("--data", args.data), ("--data-root", args.data_root),
                        ("--imagenet-root", args.imagenet_root), ("--datasets-root", getattr(args, "datasets_root", None)),
                        ("--cache-dir", args.cache_dir)):
        if value is not None:
            out += [flag, str(value)]
    return out


def _data_kw(args) -> dict:
    """The data options as the library's keyword arguments."""
    return dict(data_root=args.data_root, cache_dir=args.cache_dir, imagenet_root=args.imagenet_root,
                datasets_root=_datasets_root(args))


def cmd_run(args) -> int:
    import bench as api
    bench = _benchmark(args)
    resolved = _checked(_run_config(args, bench))
    suite = _suite(args)
    rec = api.train(resolved.config, bench, recipe=resolved.recipe, results_dir=args.results, runs_dir=args.runs_dir,
                    progress=not args.no_progress, **_data_kw(args))
    if rec is not None:  # None on a DDP rank > 0: rank 0 writes and prints the record
        _print_record(rec)
        if suite is not None:
            run_dir = Path(args.runs_dir) / bench.id / rec.run_id
            _suite_done(args, _probe_suite(args, run_dir, suite), ["bench", "probe", str(run_dir)])
    return 0


def _suite(args, names_benchmarks: bool = False):
    """The --suite of a command (checked before any work), or None. ``names_benchmarks``: the suite is what the
    command scores (probe, eval), so --benchmark / --data may not come with it."""
    if not getattr(args, "suite", None):
        if getattr(args, "allow_missing", False):
            raise BenchError("--allow-missing goes with --suite")
        return None
    if names_benchmarks and (args.benchmark or args.data):
        raise BenchError("--suite names the benchmarks: give it without --benchmark / --data")
    from bench.benchmarks.suites import get_suite
    return get_suite(args.suite)


def _probe_suite(args, run_dir, suite):
    from bench.suite_runner import probe_suite
    return probe_suite(run_dir, suite, results_dir=args.results, allow_missing=args.allow_missing,
                       log=lambda msg: out(msg, style="dim"), **_data_kw(args))


def _model_options(args) -> list[str]:
    """The model options of ``bench eval`` as a command line takes them again (the suite's continue hint): every
    one that changes the encoder, so the continued suite has the same config and reuses the records made."""
    out: list[str] = []
    for flag, value in (("--weights", args.weights), ("--weights-key", args.weights_key),
                        ("--weights-prefix", args.weights_prefix), ("--readout", args.readout), ("--name", args.name)):
        if value is not None:
            out += [flag, str(value)]
    for flag, triple in (("--mean", args.mean), ("--std", args.std)):
        if triple is not None:
            out += [flag, *map(str, triple)]
    for kv in args.model_arg:
        out += ["--model-arg", kv]
    return out


def _suite_done(args, result, again: list[str]) -> None:
    """Each record of a suite run, then what was recorded, where its leaderboard comes from and (partial) the
    command ``again`` + options that continues it."""
    for bench_id, rec in result.records.items():
        if bench_id not in result.reused:
            _print_record(rec)
    suite = result.suite
    missing = f"; missing: {', '.join(result.missing)}" if result.missing else ""
    out(f"{suite.id}: {len(result.records)} of {len(suite.benchmarks)} datasets recorded "
        f"({len(result.reused)} found already){missing}; table: bench leaderboard {suite.id} --results "
        f"{shlex.quote(str(args.results))}" + ("" if result.complete else "; continue: " + shlex.join(
            [*again, "--suite", suite.id, *_suite_data_options(args), "--results", str(args.results)])))


def _suite_data_options(args) -> list[str]:
    """The data options of a suite command line (the suite names the benchmarks: no --benchmark / --data)."""
    opts = _data_options(args)  # flag, value pairs
    return [x for flag, value in zip(opts[::2], opts[1::2]) if flag not in ("--benchmark", "--data")
            for x in (flag, value)]


def cmd_train(args) -> int:
    import bench as api
    given = args.benchmark is not None or args.data is not None
    bench = _benchmark(args) if given or not args.resume else None  # a resumed run: its own benchmark by default
    resolved = None if args.resume else _checked(_run_config(args, bench))
    run_dir = api.train(resolved.config if resolved else None, bench, recipe=resolved.recipe if resolved else None,
                        probe=False, runs_dir=args.runs_dir, resume=args.resume, progress=not args.no_progress,
                        **_data_kw(args))
    if run_dir is not None:  # None on a DDP rank > 0
        probe = shlex.join(["bench", "probe", str(run_dir), *_data_options(args)])
        out(f"trained encoder saved in {run_dir}  (evaluate: {probe})")
    return 0


def cmd_submit(args) -> int:
    from bench.benchmarks import get_benchmark
    from bench.config import budget_config
    from bench.submit import submit
    bench = get_benchmark(args.benchmark)
    resolved = _checked(budget_config(bench, args.plugin, args.recipe, epochs=args.epochs, **_set_overrides(args.set)))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    records = submit(resolved.config, bench, seeds, results_dir=args.results, leaderboards_dir=args.leaderboards,
                     runs_dir=args.runs_dir, recipe=args.recipe, progress=not args.no_progress,
                     data_root=args.data_root, cache_dir=args.cache_dir, imagenet_root=args.imagenet_root)
    for rec in records:
        _print_record(rec)
    out(f"leaderboard updated: {Path(args.leaderboards) / bench.id}")
    return 0


def cmd_reference(args) -> int:
    from bench.benchmarks import get_benchmark
    from bench.reference import missing_runs, run_missing
    bench = get_benchmark(args.benchmark)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    only = [o.strip() for o in args.only.split(",") if o.strip()] if args.only else None
    todo = missing_runs(bench, seeds, args.results, only)
    for setup, seed, _ in todo:
        print(f"missing: {setup.label} seed {seed}")
    if not todo:
        print(f"{bench.id}: every reference setup has records for seeds {seeds}")
    if args.dry_run or not todo:
        return 0
    done, failed = run_missing(bench, todo, results_dir=args.results, runs_dir=args.runs_dir,
                               progress=not args.no_progress, data_root=args.data_root, cache_dir=args.cache_dir,
                               imagenet_root=args.imagenet_root)
    if done:
        from bench.leaderboard import FORMATS
        _publish_leaderboard(bench, args.results, args.leaderboards, FORMATS)
        out(f"leaderboard updated: {Path(args.leaderboards) / bench.id}")
    if failed:
        raise TrainingError(f"{len(failed)} reference run(s) failed ({', '.join(failed)}); {done} recorded")
    return 0


def cmd_runs(args) -> int:
    from itertools import groupby
    from bench.runs import age, list_runs
    runs = [r for r in list_runs(args.runs_dir, args.results, args.benchmark) if not args.state or r.state in args.state]
    if not runs:
        print(f"no run folders under {Path(args.runs_dir) / (args.benchmark or '')}"
              + (f" in state {', '.join(args.state)}" if args.state else ""))
        return 0
    colour = {"recorded": "green", "training": "cyan", "trained": "yellow", "interrupted": "yellow", "empty": "red"}
    for bench_id, group in groupby(runs, key=lambda r: r.benchmark):
        group = list(group)
        print_table(("run", "recipe", "seed", "state", "progress", "updated"),
                    [(r.run_id, r.recipe, r.seed, f"[{colour[r.state]}]{r.state}[/]", r.progress,
                      f"{age(r.updated)} ago") for r in group], title=bench_id)
        for r in group:
            if r.state != "recorded":
                out(f"  {r.run_id} ({r.state}): {r.detail}")
    return 0


def cmd_curves(args) -> int:
    from bench.curves import plot_curves
    out(f"written: {plot_curves(args.run_dirs, args.out)}")
    return 0


def cmd_probe(args) -> int:
    import bench as api
    suite = _suite(args, names_benchmarks=True)
    if suite is not None:
        _suite_done(args, _probe_suite(args, args.run_dir, suite), ["bench", "probe", str(args.run_dir)])
        return 0
    given = args.benchmark is not None or args.data is not None
    rec = api.evaluate(Path(args.run_dir), _benchmark(args) if given else None, results_dir=args.results,
                       **_data_kw(args))  # no --benchmark: the one in the run's run.json
    _print_record(rec)
    return 0


def cmd_eval(args) -> int:
    """A run folder (as ``bench probe``) or an external encoder (``--model``) scored with the benchmark's probes."""
    if (args.run_dir is None) == (args.model is None):
        raise BenchError("give a run folder or --model SPEC (not both)")
    if args.run_dir is not None:
        if args.weights or args.name or args.model_arg:
            raise BenchError("--weights / --name / --model-arg go with --model, not with a run folder")
        return cmd_probe(args)
    import bench as api
    load_kw = dict(weights_key=args.weights_key, weights_prefix=args.weights_prefix, mean=args.mean, std=args.std,
                   readout=args.readout,
                   model_kwargs=_set_overrides(args.model_arg, flag="--model-arg") if args.model_arg else None)
    suite = _suite(args, names_benchmarks=True)
    if suite is not None:
        result = api.evaluate_suite(args.model, suite, weights=args.weights, results_dir=args.results,
                                    name=args.name, allow_missing=args.allow_missing,
                                    log=lambda msg: out(msg, style="dim"), **_data_kw(args), **load_kw)
        _suite_done(args, result, ["bench", "eval", "--model", args.model, *_model_options(args)])
        return 0
    rec = api.evaluate(args.model, _benchmark(args), weights=args.weights, results_dir=args.results, name=args.name,
                       **_data_kw(args), **load_kw)
    if rec.model.get("resampled"):
        out(f"note: {rec.model['resampled']}")
    _print_record(rec)
    return 0


def _publish_leaderboard(benchmark, results, out, formats: tuple[str, ...], standalone: bool = False) -> list[Path]:
    """Write the leaderboard files of a Benchmark (or id) and print the markdown table."""
    from bench.leaderboard import render_leaderboard, write_leaderboard
    df, paths = write_leaderboard(benchmark, results, out, formats, standalone=standalone)
    print(render_leaderboard(df, "md", title=getattr(benchmark, "id", benchmark)))
    return paths


def cmd_leaderboard(args) -> int:
    from bench.benchmarks import get_benchmark
    from bench.benchmarks.suites import is_suite
    from bench.records import load_records
    if is_suite(args.benchmark):
        from bench.suite_leaderboard import render_suite_leaderboard, write_suite_leaderboard
        df, paths = write_suite_leaderboard(args.benchmark, args.results, args.out, tuple(args.format), args.standalone)
        print(render_suite_leaderboard(df, "md"))
        out("written: " + ", ".join(str(p) for p in paths))
        return 0
    try:
        bench = get_benchmark(args.benchmark)
    except ConfigError:
        if not load_records(args.results, args.benchmark):  # ad-hoc (custom-...) ids only need records
            raise
        bench = args.benchmark
    paths = _publish_leaderboard(bench, args.results, args.out, tuple(args.format), args.standalone)
    out("written: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_table(args) -> int:
    from bench.tables import load_table_spec, write_table
    spec = load_table_spec(args.spec)
    if args.format:
        spec = spec.model_copy(update={"formats": list(dict.fromkeys(args.format))})
    texts, paths = write_table(spec, results=args.results, output=args.out)
    print(texts["md"] if "md" in texts else texts["tex"])
    if paths:
        out("written: " + ", ".join(str(p) for p in paths))
    return 0


def _int_pair(text: str | None, flag: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise BenchError(f"{flag} expects two whole numbers N,M (got {text!r})") from None
    if not 0 < a < b:
        raise BenchError(f"{flag} expects 0 < N < M (got {text!r})")
    return a, b


def cmd_perf(args) -> int:
    from bench.perf import SECTIONS, options_from, perf_table, run_perf, write_report
    opts = options_from(args.quick, method=args.method, backbone=args.backbone, stem=args.stem,
                        precision=args.precision, frames=args.frames, img_size=args.img_size,
                        batch_size=args.batch_size, warmup=args.warmup, steps=args.steps,
                        repeats=args.repeats, progress_bar=True if args.progress_bar else None,
                         data_batches=args.data_batches, decode_images=args.decode_images,
                         decode_size=args.decode_size, cache_rows=_int_pair(args.cache_rows, "--cache-rows"),
                         pipeline_source_px=args.pipeline_source_px, probe_samples=args.probe_samples,
                         probe_epochs=args.probe_epochs, probe_benchmark=args.probe_benchmark,
                         probe_images=args.probe_images, knn_train=args.knn_size, knn_queries=args.knn_size,
                        knn_dim=args.knn_dim)
    sections = tuple(s.strip() for s in args.only.split(",") if s.strip()) if args.only else SECTIONS
    report = run_perf(opts, sections, log=lambda msg: out(msg, style="dim"))
    print_table(**perf_table(report))
    out(f"report written to {write_report(report, args.out)}")
    return 0


def cmd_plan(args) -> int:
    """Train or load the pixel and embedding world models, plan the push-plan-v1 tasks, write the record and the
    leaderboard (--set / --episodes changes make a custom-push-plan-* benchmark of their own)."""
    from bench.data import default_cache_dir
    from bench.world_model.encoders import PixelFrameEncoder, load_frame_encoder
    from bench.world_model.plan_report import write_plan_leaderboard
    from bench.world_model.plan_spec import plan_spec
    from bench.world_model.planning import PLAN_COLUMNS, parse_planners, plan_rows, run_planning_benchmark, write_plan_result
    methods = parse_planners(args.methods)
    spec = plan_spec(_set_overrides(args.set), episodes=args.episodes)
    encoder = load_frame_encoder(args.encoder, seed=args.seed)
    result = run_planning_benchmark(encoder, PixelFrameEncoder(), spec, seed=args.seed, models_dir=args.models_dir,
                                    cache_dir=args.cache_dir or default_cache_dir(), methods=methods,
                                    retrain=args.retrain, progress=not args.no_progress,
                                    log=lambda msg: out(msg, style="dim"))
    print_table(PLAN_COLUMNS, plan_rows(result), title=f"{spec.id}: {result.encoder}, {spec.episodes} tasks")
    path = write_plan_result(result, args.results)
    out(f"written: {path}, {write_plan_leaderboard(args.results, args.leaderboards, spec.id)}")
    return 0


def cmd_futures(args) -> int:
    """futures-v1: pixel vs embedding prediction of ambiguous futures; write the record, leaderboard and a strip."""
    from bench.futures.experiment import load_clip_encoder, run_futures, write_futures_record
    from bench.futures.report import write_futures_leaderboard, write_strip
    from bench.futures.spec import futures_spec
    spec = futures_spec(_set_overrides(args.set))
    encoder = load_clip_encoder(args.encoder, spec.grid, seed=args.seed)
    record, tensors = run_futures(encoder, spec, seed=args.seed, log=lambda msg: out(msg, style="dim"))
    path = write_futures_record(record, args.results)
    board = write_futures_leaderboard(args.results, args.leaderboards, spec.id)
    strip = write_strip(tensors, Path(args.leaderboards) / spec.id / f"strip-{record.run_id}.png")
    out(f"written: {path}, {board}, {strip}")
    return 0


def cmd_demo(args) -> int:
    """Train each demo method briefly on the embedded data, probe it and a random init, print the table."""
    from bench.benchmarks import get_benchmark
    from bench.demo import demo_methods, demo_runs, run_demo

    bench = get_benchmark(args.benchmark)
    runs = demo_runs(bench, demo_methods(args.methods), epochs=args.epochs, seed=args.seed, stem=args.stem)
    _, seconds = run_demo(
        bench, runs, out=args.out, progress=not args.no_progress, cache_dir=args.cache_dir,
        on_data=lambda data: out(
            f"ssl-bench demo on {bench.id}: {len(data.train)} train / {len(data.eval)} val images, "
            f"{len(data.train.classes)} classes, {bench.img_size} px"),
        on_run=lambda run: rule(f"{run.name} ({run.config.epochs} epochs)"),
        on_record=_print_record)
    rule("leaderboard")
    results = Path(args.out) / "results"
    _publish_leaderboard(bench, results, Path(args.out) / "leaderboards", ("md", "csv"))
    out(f"demo finished in {seconds:.0f} s; records under {results}")
    return 0


def _resume_plan(args):
    """How the SLURM job continues this command after the time-limit warning: its data options, again."""
    from bench.slurm import ResumePlan
    return ResumePlan(data=tuple(_data_options(args)), train_flags=("--no-progress",) if args.no_progress else (),
                      probe_results=str(args.results) if args.command == "run" else None,
                      top=("--debug",) if args.debug else ())


def slurm_job(argv: list[str]):
    """The bench.slurm.SlurmJob that runs the ``bench`` command line ``argv`` (``--slurm`` dropped) with this
    module's ``main`` and continues it with ``train --resume`` after the time-limit warning."""
    from bench.slurm import SlurmJob, strip_slurm_flag
    argv = strip_slurm_flag(argv)
    return SlurmJob([argv], main, _resume_plan(build_parser().parse_args(argv)))


def _submit_to_slurm(args, argv: list[str]) -> int:
    """Queue this very command line (minus --slurm); its config is built and checked here, before queueing."""
    from bench.runner import check_config
    from bench.runs import resume_info
    from bench.slurm import job_name, parse_spec, strip_slurm_flag, submit_job
    spec = parse_spec(args.slurm)
    argv = strip_slurm_flag(argv)
    if getattr(args, "resume", None):
        config = resume_info(args.resume)["config"]
        devices, nodes = int(config.get("devices", 1)), int(config.get("num_nodes", 1))
    else:
        if spec.gpus_per_node and args.devices is None:  # one process per GPU
            args = argparse.Namespace(**{**vars(args), "devices": spec.gpus_per_node})
            argv = [*argv, "--devices", str(spec.gpus_per_node)]
        resolved = _run_config(args, _benchmark(args))
        check_config(resolved.config)
        devices, nodes = resolved.config.devices, resolved.config.num_nodes
    return submit_job(slurm_job(argv), spec, devices=devices, nodes=nodes, folder=Path(args.runs_dir) / "slurm",
                      name=job_name(args.command, getattr(args, "method", None)))


def cmd_data_prepare(args) -> int:
    from bench.data.prepare import prepare_imagenette64
    result = prepare_imagenette64(args.source, args.data_root, force=args.force, progress=not args.no_progress)
    print("\n".join(result.summary()))
    return 0 if result.reproduced else 1


def cmd_cache_verify(args) -> int:
    from bench.data import default_cache_dir
    from bench.data.cache import verify_cache
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    entries = verify_cache(cache_dir)
    print_table(("entry", "size", "state"),
                [(str(npy), f"{npy.stat().st_size / 2**20:.1f} MiB", "[green]ok[/]" if why is None else f"[red]corrupt[/]: {why}")
                 for npy, why in entries], title=f"cache {cache_dir}")
    bad = [npy for npy, why in entries if why is not None]
    if bad and args.remove:
        for npy in bad:
            npy.unlink(missing_ok=True)
            npy.with_suffix(".json").unlink(missing_ok=True)
    out(f"{len(entries) - len(bad)} of {len(entries)} entries whole" + (
        "" if not bad else f"; {len(bad)} corrupt " + ("removed (rebuilt on next use)" if args.remove else
                                                         "(remove them with --remove; they are rebuilt on next use)")))
    return 1 if bad else 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="ssl-bench: train SSL methods, probe frozen encoders, "
                                     "build versioned leaderboards.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from bench.demo import ALL_DEMO_METHODS, DEMO_EPOCHS, DEMO_METHODS, DEMO_VIT_EPOCHS

    p = sub.add_parser("demo", help="train SimCLR + Barlow Twins briefly on the embedded data and print a leaderboard")
    p.add_argument("--benchmark", default="imagenette-mini-v1", help="benchmark to run the demo on")
    p.add_argument("--methods", default=",".join(DEMO_METHODS),
                   help=f"comma-separated methods (each needs a recipe), or 'all' = {','.join(ALL_DEMO_METHODS)}")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs per method (default: {DEMO_EPOCHS}, ViTs {DEMO_VIT_EPOCHS})")
    p.add_argument("--stem", default="imagenet", choices=["imagenet", "small", "cifar"], help="ResNet stem for the demo")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--out", default="bench-demo", help="folder for the demo's results, runs and leaderboards")
    p.add_argument("--cache-dir", default=None, help="decoded-image and feature cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="train + probe + write one run record (--suite: then a record per suite benchmark)")
    _add_train_opts(p)
    _add_data_opts(p)
    _add_suite_opts(p)
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

    p = sub.add_parser("submit", help="smoke-test a method plugin, train it on a benchmark for N seeds, "
                                      "probe, record and update the leaderboard")
    p.add_argument("plugin", help="path/to/plugin.py[:Class], module:Class or a registered method name")
    p.add_argument("--benchmark", default="imagenette64-v1", help="benchmark id NAME-vN; its budget sets "
                   "backbone, crop, epochs and batch size")
    p.add_argument("--seeds", type=int, default=2, help="number of seeds (one record each)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed+seeds-1")
    p.add_argument("--recipe", default=None, help="recipe YAML for the method's optimiser / lr / hyper-parameters")
    p.add_argument("--epochs", type=int, default=None, help="override the benchmark budget's epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    _add_batch_opts(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("reference", help="train, probe and record every reference setup of a benchmark that has no "
                                         "record yet (resumes interrupted runs), then rewrite its leaderboard")
    p.add_argument("benchmark", help="benchmark id NAME-vN with reference setups (bench/reference.py)")
    p.add_argument("--seeds", type=int, default=2, help="number of seeds per setup")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed+seeds-1")
    p.add_argument("--dry-run", action="store_true", help="only list the missing (setup, seed) runs")
    p.add_argument("--only", default=None, metavar="A,B", help="only these setups (labels as --dry-run prints "
                   "them), run in this order")
    _add_batch_opts(p)
    p.set_defaults(func=cmd_reference)

    from bench.runs import STATES
    p = sub.add_parser("runs", help="list run folders: recorded, trained (not probed), training now, or interrupted "
                       "(with the command that continues each)")
    p.add_argument("benchmark", nargs="?", default=None, help="only this benchmark id's runs (default: all)")
    p.add_argument("--state", nargs="+", default=None, choices=STATES,
                   help="only runs in these states")
    p.add_argument("--runs-dir", default="runs", help="where run folders are")
    p.add_argument("--results", default="results", help="folder of run records")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("curves", help="plot the training curves (loss, online probe, effective rank, feature std per "
                       "epoch) of run folders, one line per run")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (runs/<benchmark>/<run_id>)")
    p.add_argument("--out", default="curves.png", help="output file: .png, .svg or .pdf (default: curves.png)")
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("probe", help="probe a trained run folder's frozen encoder and write its record")
    p.add_argument("run_dir", help="run folder written by `bench train` (holds run.json + encoder.pt)")
    _add_data_opts(p)
    _add_suite_opts(p)
    p.add_argument("--results", default="results", help="folder of run records")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("eval", help="score any frozen encoder: a run folder, or --model SPEC [--weights PATH] "
                                    "(timm / torchvision / local Hugging Face / your callable, any checkpoint layout)")
    p.add_argument("run_dir", nargs="?", default=None, help="run folder written by `bench train` (instead of --model)")
    p.add_argument("--model", default=None, metavar="SPEC", help="timm:NAME, torchvision:NAME, hf:PATH, "
                   "module:callable or path/to/file.py:callable")
    p.add_argument("--weights", default=None, metavar="PATH", help="weights file: a state_dict, a Lightning .ckpt, or "
                   "an official DINO / DINOv2 / I-JEPA / V-JEPA / MAE / MoCo v3 training checkpoint (layout detected)")
    p.add_argument("--weights-key", default=None, help="the checkpoint entry that holds the encoder (overrides detection)")
    p.add_argument("--weights-prefix", default=None, help="key prefix to strip, e.g. module.backbone. (overrides "
                   "detection)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument of the model (YAML value), e.g. --model-arg class_token=false")
    p.add_argument("--mean", type=float, nargs=3, default=None, help="normalisation mean (default: the model's)")
    p.add_argument("--std", type=float, nargs=3, default=None, help="normalisation std (default: the model's)")
    p.add_argument("--readout", default=None, choices=["pooled", "last4"],
                   help="the k-NN / linear feature: the model's own pooled one, or last4 = DINOv2's linear-eval "
                        "feature (the [CLS] tokens of the last 4 blocks + the average patch token; ViTs)")
    p.add_argument("--name", default=None, help="label of the record and its leaderboard row (default: the SPEC)")
    _add_data_opts(p)
    _add_suite_opts(p)
    p.add_argument("--results", default="results", help="folder of run records")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plan", help="push-plan-v1: train (or reuse) action-conditioned world models on a frozen "
                                    "encoder and on pixels, plan goal images with CEM + MPC, write the record and leaderboard")
    p.add_argument("--encoder", required=True, metavar="RUN_DIR|random|pixels",
                   help="frozen frame encoder: a run folder from `bench train`, 'random' (random-init vit_tiny/4) "
                        "or 'pixels' (the pixel baseline)")
    p.add_argument("--episodes", type=int, default=50,
                   help="planning tasks (the fixed task seeds 0 .. N-1); other than 50: a custom-push-plan-* benchmark")
    p.add_argument("--seed", type=int, default=0, help="seed of the planners' sampling (and of --encoder random); "
                                                       "the leaderboard aggregates seeds")
    p.add_argument("--methods", default="random,oracle,pixel,jepa", metavar="A,B",
                   help="planners: random (random actions), oracle (true dynamics), pixel (world model on pixels), "
                        "jepa (world model on the encoder's embeddings)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a planning setting plan.KEY (e.g. plan.horizon=6, plan.samples=128) or a "
                        "world-model setting wm.KEY (e.g. wm.steps=500, wm.episodes=200, wm.env.size=32); the run is then a "
                        "custom-push-plan-<hash8>-v1 benchmark, never mixed with push-plan-v1")
    p.add_argument("--results", default="results", help="folder of run records (JSON under push-plan-v1/ or custom-push-plan-*/)")
    p.add_argument("--leaderboards", default="leaderboards",
                   help="folder for the leaderboard (push-plan-v1/leaderboard.md, seeds aggregated)")
    p.add_argument("--models-dir", default="runs/push-world-models",
                   help="trained world models, reused when encoder and world-model settings match")
    p.add_argument("--retrain", action="store_true", help="train the world models again even if saved ones match")
    p.add_argument("--cache-dir", default=None, help="frame-embedding cache (default: $BENCH_CACHE_DIR or ~/.cache/ssl-bench)")
    p.add_argument("--no-progress", action="store_true", help="no training progress lines")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("futures", help="futures-v1: on clips whose future turns one of two ways, a pixel MSE predictor "
                                       "vs a JEPA predictor of a frozen encoder's embedding; record + table + PNG strip")
    p.add_argument("--encoder", required=True, metavar="RUN_DIR|random",
                   help="frozen clip encoder: a run folder from `bench train` with a video backbone (e.g. vjepa on "
                        "moving-shapes) or 'random' (random-init video_vit_tiny, patch 8, tubelet 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of both predictors (and of --encoder random)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a futures-v1 setting (e.g. steps=400, n_train=512); the run is then a custom-futures-* "
                        "benchmark, never mixed with futures-v1")
    p.add_argument("--results", default="results", help="folder of run records (JSON under futures-v1/)")
    p.add_argument("--leaderboards", default="leaderboards",
                   help="folder for the table and strips (futures-v1/leaderboard.md, strip-<run_id>.png)")
    p.set_defaults(func=cmd_futures)

    p = sub.add_parser("data", help="named datasets: `bench data prepare imagenette64 SOURCE` rebuilds one from its "
                                    "public source")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = data_sub.add_parser("prepare", help="rebuild a named dataset under the data root from its public source and "
                                            "check it against the shipped manifest (exit 1: written, but not the "
                                            "benchmark's bytes)")
    p.add_argument("dataset", choices=["imagenette64"], help="the dataset to rebuild")
    p.add_argument("source", help="imagenette64: the folder `git clone https://github.com/thunderInfy/imagenette` "
                                  "gives (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), or its train or val folder")
    p.add_argument("--data-root", default=None, help="where to write DATASET/ (default: $BENCH_DATA_ROOT or "
                   "../shared/datasets, where the other commands look)")
    p.add_argument("--force", action="store_true", help="replace an existing DATA_ROOT/DATASET")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("cache", help="the decoded-split cache: `bench cache verify` checks every entry in full")
    cache_sub = p.add_subparsers(dest="cache_command", required=True, metavar="SUBCOMMAND")
    p = cache_sub.add_parser("verify", help="full sha256 check of every cached split (loading checks only the "
                                            "header, size and a sample of rows); exit 1 if any is corrupt")
    p.add_argument("--cache-dir", default=None, help="the cache (default: $BENCH_CACHE_DIR or ~/.cache/ssl-bench)")
    p.add_argument("--remove", action="store_true", help="remove corrupt entries (they are rebuilt on next use)")
    p.set_defaults(func=cmd_cache_verify)

    p = sub.add_parser("methods", help="list registered methods")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("benchmarks", help="list benchmark versions and suites")
    p.set_defaults(func=cmd_benchmarks)

    p = sub.add_parser("leaderboard", help="aggregate one benchmark version's records into tables (a suite id: "
                                           "per-dataset scores, their mean and average rank)")
    p.add_argument("benchmark", help="benchmark id NAME-vN, or a suite id such as transfer-v1")
    p.add_argument("--results", default="results", help="folder of run records")
    p.add_argument("--out", default="leaderboards", help="output folder (a sub-folder per benchmark id)")
    p.add_argument("--format", nargs="+", default=["md", "csv"], choices=["md", "csv", "tex", "html"],
                   help="formats to write (html: a self-contained page with a sortable table, a cost plot and "
                        "links to the records)")
    p.add_argument("--standalone", action="store_true", help="tex: a compilable document instead of a table to \\input")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("table", help="a paper table (tex / md) from a YAML spec: benchmarks, scores, methods, "
                                     "caption; see examples/paper_table.yaml")
    p.add_argument("spec", help="table spec YAML")
    p.add_argument("--results", default=None, help="folder of run records (default: the spec's, else results)")
    p.add_argument("--out", default=None, help="output path without extension (default: the spec's output; "
                   "none: print only)")
    p.add_argument("--format", nargs="+", default=None, choices=["tex", "md"], help="override the spec's formats")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("perf", help="benchmark the harness: training step vs a bare PyTorch loop, data pipeline, "
                                    "1- vs 20-probe linear grid, faiss vs brute-force k-NN; prints ratios, writes JSON")
    p.add_argument("--quick", action="store_true", help="small sizes (batch 64, 4 timed steps, 5k x 5k k-NN): ~1-2 min on 2 cores")
    p.add_argument("--only", default=None, metavar="A,B", help="comma-separated sections: train,data,pipeline,probe,knn (default: all)")
    p.add_argument("--out", default="perf.json", help="JSON report (written atomically)")
    p.add_argument("--method", default=None, help="method whose step is timed (default simclr, with its recipe)")
    p.add_argument("--backbone", default=None, help="backbone (default: the method's recipe, resnet18 for simclr)")
    p.add_argument("--stem", default=None, choices=["imagenet", "small", "cifar"], help="ResNet stem (default: recipe's)")
    p.add_argument("--precision", default=None, choices=["32-true", "bf16-mixed", "16-mixed"],
                   help="training precision (default: the recipe's)")
    p.add_argument("--img-size", type=int, default=None, help="image size in pixels (default 32)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip for video backbones (default 8)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default 256; --quick 64)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default 3)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 10)")
    p.add_argument("--repeats", type=int, default=None, help="alternate harness / bare loop (and probe grids) this "
                   "many times, keep the best of each (default 1)")
    p.add_argument("--progress-bar", action="store_true", help="time the harness with its progress bar on")
    p.add_argument("--data-batches", type=int, default=None, help="batches for the data-pipeline measurement")
    p.add_argument("--decode-images", type=int, default=None, help="synthetic 500x375 JPEGs the data section decodes "
                   "(default 200; --quick 48)")
    p.add_argument("--decode-size", type=int, default=None, help="cache size the data section decodes them to (default 256)")
    p.add_argument("--pipeline-source-px", type=int, default=None, help="side of the JPEGs the pipeline section's "
                   "two pipelines read (default 64)")
    p.add_argument("--cache-rows", default=None, metavar="N,M", help="rows of the two cached splits whose load times "
                   "the data section compares (default 2000,16000)")
    p.add_argument("--probe-samples", type=int, default=None, help="features for the linear-grid timing (default 10000)")
    p.add_argument("--probe-epochs", type=int, default=None, help="linear-probe epochs (default 5)")
    p.add_argument("--probe-benchmark", default=None, help="benchmark whose probes are timed against its feature "
                   "extraction, random-init encoder (default imagenette-mini-v1)")
    p.add_argument("--probe-images", type=int, default=None, help="time the probes on a fixed draw of at most this "
                   "many images per split (default all; --quick 500)")
    p.add_argument("--knn-size", type=int, default=None, help="k-NN train and query rows (default 50000)")
    p.add_argument("--knn-dim", type=int, default=None, help="k-NN feature dimension (default 384)")
    p.set_defaults(func=cmd_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_lightning()
    try:
        if getattr(args, "slurm", None) is not None:  # queue this very command line (minus --slurm) and return
            return _submit_to_slurm(args, sys.argv[1:] if argv is None else list(argv))
        workers = getattr(args, "decode_workers", None)  # None: the usable cores
        if workers is not None or "bench.data.parallel" in sys.modules:  # not imported: nothing to reset (no torch)
            from bench.data.parallel import set_decode_workers
            set_decode_workers(workers)
        budget = getattr(args, "cache_budget", None)  # None: the default budget
        if budget is not None or "bench.data.streaming" in sys.modules:
            from bench.data.streaming import set_cache_budget
            set_cache_budget(budget)
        return args.func(args)
    except BenchError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `bench runs | head`: the reader left; stop quietly, as Unix tools do (128 + SIGPIPE)
        try:  # nothing more reaches the closed pipe, so Python's flush at exit raises nothing either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
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
