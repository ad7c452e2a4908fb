"""Benchmark runs: ``train_run`` trains (or, for baselines, just initialises) a method and saves the
encoder + a ``run.json`` summary in a run folder; ``probe_run`` evaluates that encoder with the
benchmark's probes and writes the run record; ``run_benchmark`` is both. ``train`` is the public
``bench.train`` over them (a method name and overrides, configured as ``bench run`` does); the CLI's ``run`` and
``train`` call it, ``probe`` goes through ``bench.evaluate`` (bench.scoring), ``demo`` uses these directly.

Each checks what it can without data first (:func:`check_config`: the method resolves, the backbone takes its
options; a resumed run folder has a readable run.json), so a typo costs no dataset lookup. On a process of rank > 0
of a multi-process run (Lightning's DDP launcher, ``srun``, ``torchrun``) ``train_run`` and ``run_benchmark``
train in lock-step with rank 0 but own nothing (a temporary run folder, no probes, no record) and return None."""

from __future__ import annotations

import difflib
import inspect
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench.backbones import check_backbone, create_backbone, is_video_backbone
from bench.benchmarks import Benchmark
from bench.config import TrainConfig, recipe_label
from bench.data import ImageData, check_classes, data_fingerprint, load_split
from bench.distributed import is_worker_rank
from bench.errors import BenchError, ConfigError, DataError, TrainingError
from bench.io import (atomic_torch_save, atomic_write_json, checksum_path, read_torch_data,
                      remove_orphan_temps, verify_checksum)
from bench.records import (BenchmarkRef, DataRef, RunRecord, collect_env, collect_hardware, config_hash,
                           git_sha, new_run_id, probe_fields, write_record)
from bench.runs import read_run_json, resume_info, run_lock
from methods import get_method
from methods.base import Method

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BenchData:
    """A benchmark's train and eval splits. Their labels index the train split's class list, so the eval split must
    carry exactly those classes (:func:`bench.data.check_classes`, checked here for every data source)."""

    train: ImageData
    eval: ImageData

    def __post_init__(self) -> None:
        check_classes(self.train, self.eval)

    @property
    def fingerprint(self) -> str:
        return data_fingerprint([(self.train.split, self.train.fingerprint), (self.eval.split, self.eval.fingerprint)])


def load_benchmark_data(benchmark: Benchmark, data_root: str | None = None, cache_dir: str | None = None,
                        imagenet_root: str | None = None, datasets_root: str | None = None) -> BenchData:
    """The benchmark's train and eval splits (``datasets_root``: the default ROOT of ``tv:`` specs;
    ``imagenet_root``: a local ImageNet for the ImageNet specs, default
    ``$BENCH_IMAGENET_ROOT``), checked against its pinned data fingerprint."""
    kw: dict = dict(data_root=data_root, cache_dir=cache_dir, imagenet_root=imagenet_root, datasets_root=datasets_root)
    if benchmark.is_video:  # clips: frames, stride, size and the label column are the benchmark's
        kw.update(frames=benchmark.frames, stride=benchmark.frame_stride, label=benchmark.label,
                  size=round(benchmark.img_size / benchmark.crop_pct))
    data = BenchData(train=load_split(benchmark.data, benchmark.train_split, **kw),
                     eval=load_split(benchmark.data, benchmark.eval_split, **kw))
    for split in (data.train, data.eval) if not benchmark.upsample else ():  # upsample: the protocol enlarges them
        check_image_size(split, benchmark.img_size, f"{benchmark.id}'s evaluation crop")
    if benchmark.data_fingerprint and data.fingerprint != benchmark.data_fingerprint:
        raise DataError(f"the data loaded for {benchmark.id} ({benchmark.data}) is not the data the benchmark was "
                        f"defined on (fingerprint {data.fingerprint[:12]}..., expected "
                        f"{benchmark.data_fingerprint[:12]}...): files differ, are missing or were added; results "
                        f"would not be comparable - restore the original dataset or use --data for an ad-hoc run")
    return data


def check_image_size(data: ImageData, crop: int, what: str) -> None:
    """Images smaller than a crop would be upsampled: refuse instead of scoring blurred pixels."""
    h, w = data.images.shape[-2:]
    if min(h, w) < crop:
        raise DataError(f"images of {data.spec} ({data.split}) are {h}x{w} px, smaller than {what} of {crop} px; "
                        f"use larger images or a smaller --img-size")


def check_modality(cfg: TrainConfig, data: ImageData) -> None:
    """Clips (N, T, 3, H, W) need a video backbone whose tubelets tile them; images need an image backbone."""
    video = data.images.ndim == 5
    if video != is_video_backbone(cfg.backbone):
        raise ConfigError(f"{data.spec} holds {'video clips' if video else 'images'} but backbone {cfg.backbone!r} "
                          f"takes {'images' if video else 'clips'}; use "
                          + ("a video backbone (--backbone video_vit_tiny | video_vit_small)" if video
                             else "an image backbone (resnet18, vit_tiny, ...)"))
    if video:
        tubelet = int(cfg.backbone_kwargs.get("tubelet", 2))
        patch = int(cfg.backbone_kwargs.get("patch_size", 4))
        if data.images.shape[1] % tubelet or cfg.img_size % patch:
            raise ConfigError(f"clips of {data.images.shape[1]} frames at {cfg.img_size} px do not split into "
                              f"{tubelet}-frame x {patch} px tubelets; change tubelet / patch_size / img_size")


def hyper_parameters(method_cls) -> dict | None:
    """The keywords ``method_cls(backbone, **kw)`` takes and their defaults (``inspect.Parameter.empty`` where none),
    following a ``**kwargs`` on to the parent class's ``__init__`` (ibot passes DINO's on); None when a ``**kwargs``
    reaches ``Method`` (any keyword may be taken)."""
    params_of: dict = {}
    for cls in method_cls.__mro__:
        if cls is Method or not issubclass(cls, Method):
            return None
        if "__init__" in vars(cls):
            params = inspect.signature(cls.__init__).parameters.values()
            params_of.update({p.name: p.default for p in params if p.name not in ("self", "backbone", *params_of)
                              and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)})
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                return params_of
    return None


def check_config(cfg: TrainConfig):
    """What a config can be checked for without data or weights: the method resolves (a plugin file imports and
    honours the contract), the backbone is registered and takes its backbone_kwargs, the method takes its
    method_kwargs (a mapping or list given for a hyper-parameter whose default is a single number, text or flag is
    refused: ``--set method_kwargs.temperature.x=1``). Returns the method class."""
    method_cls = get_method(cfg.method)
    check_backbone(cfg.backbone, cfg.backbone_kwargs)
    known = hyper_parameters(method_cls)
    if known is not None:
        for key, value in cfg.method_kwargs.items():
            if key not in known:
                hint = difflib.get_close_matches(key, list(known), n=1)
                raise ConfigError(f"method {method_cls.name!r} has no hyper-parameter {key!r}"
                                  + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                  + f"; it takes: {', '.join(known)}")
            default = known[key]
            if isinstance(value, (dict, list)) and isinstance(default, (bool, int, float, str)):
                raise ConfigError(f"method {method_cls.name!r} hyper-parameter {key!r} is a single value (default "
                                  f"{default!r}), got {type(value).__name__} {value!r}; set it with "
                                  f"--set method_kwargs.{key}=VALUE")
    return method_cls


def build_method(cfg: TrainConfig):
    """Backbone + method from a config; seeded so a seed gives the same initial weights."""
    method_cls = check_config(cfg)
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.backbone, cfg.img_size, **cfg.backbone_kwargs)
    try:
        return method_cls(backbone, **cfg.method_kwargs)
    except TypeError as e:
        raise ConfigError(f"method {cfg.method!r} rejected its hyper-parameters {cfg.method_kwargs}: {e}") from None


def _record_base(info: dict, benchmark: Benchmark, data: BenchData) -> dict:
    config = info["config"]
    return dict(
        run_id=info["run_id"], method=info["method"], backbone=config["backbone"], recipe=info.get("recipe"),
        benchmark=BenchmarkRef(name=benchmark.name, version=benchmark.version, spec_hash=benchmark.spec_hash()),
        data=DataRef(spec=benchmark.data, fingerprint=data.fingerprint), seed=config["seed"],
        config=config, config_hash=config_hash(config), git_sha=git_sha(REPO_ROOT),
        env=collect_env(), hardware=collect_hardware(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint whose bytes are not what was saved (its ``last.ckpt.sha256``), or that is unreadable or
    holds anything but data (loaded with weights_only=True): nothing is resumed from it."""
    if not path.exists():
        return  # interrupted before the first epoch ended: training restarts from scratch
    check = verify_checksum(path)
    if check is not None and not check[0]:
        raise BenchError(f"cannot resume from {path}: its sha256 {check[1][:12]}... is not the one saved beside it "
                         f"in {checksum_path(path).name} ({check[2][0][:12] if check[2] else 'none'}...): the file "
                         f"changed after it was written (disk or copy error); nothing resumed - restore it, or delete "
                         f"it and {checksum_path(path).name} to restart the run from scratch")
    try:
        read_torch_data(path)
    except BenchError as e:
        raise BenchError(f"cannot resume: {e}; delete it to restart the run from scratch") from None


def train_run(cfg: TrainConfig | None, benchmark: Benchmark, *, runs_dir: str | Path = "runs",
              recipe: str | None = None, data: BenchData | None = None, results_dir: str | Path | None = None,
              progress: bool = True, data_root: str | None = None, cache_dir: str | None = None,
              imagenet_root: str | None = None, datasets_root: str | None = None, resume: str | Path | None = None,
              log: Callable[[str], None] | None = print) -> Path | None:
    """Train on the benchmark's train split; returns the run folder (encoder.pt + run.json).
    ``resume``: an interrupted run folder; training continues from its last checkpoint with its config (``cfg`` is
    ignored). A training fault (NaN loss, ...) writes a ``failed`` record to results_dir (if given) and re-raises.
    ``progress`` / ``log``: a progress bar on a terminal, else one line per epoch to ``log`` (``bench.trainer.fit``).
    On a process of rank > 0 of a multi-process run: trains in a temporary folder, writes nothing, returns None."""
    info = resume_info(resume) if resume is not None else None
    if info is not None:
        cfg = _run_config(info, resume)
    check_config(cfg)  # before any data is looked up
    if is_worker_rank(cfg.world_size):
        _train_on_worker_rank(cfg, benchmark, resume=resume, data=data, data_root=data_root, cache_dir=cache_dir,
                              imagenet_root=imagenet_root, datasets_root=datasets_root)
        return None
    data = data or load_benchmark_data(benchmark, data_root, cache_dir, imagenet_root, datasets_root)
    return _train(cfg, info, benchmark, data, runs_dir=runs_dir, recipe=recipe, results_dir=results_dir,
                  progress=progress, resume=resume, log=log)


def _run_config(info: dict, run_dir: str | Path, fail: str = "cannot resume") -> TrainConfig:
    try:
        return TrainConfig(**info["config"])
    except (TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise BenchError(f"{fail} {run_dir}: its run.json config is not valid "
                         f"({str(e).splitlines()[0]})") from None


def _train(cfg: TrainConfig, info: dict | None, benchmark: Benchmark, data: BenchData, *, runs_dir: str | Path,
           recipe: str | None, results_dir: str | Path | None, progress: bool, resume: str | Path | None,
           log: Callable[[str], None] | None = None) -> Path:
    """Train in a new run folder under ``runs_dir`` or, with ``resume`` (and its run.json ``info``), in that one."""
    if resume is not None:
        run_dir = Path(resume)
        check_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        method = build_method(cfg)
    else:
        check_image_size(data.train, cfg.img_size, "the training crop")
        check_modality(cfg, data.train)
        method = build_method(cfg)
        info = {"run_id": new_run_id(method.name, cfg.seed), "method": method.name, "recipe": recipe_label(recipe),
                "config": cfg.model_dump(mode="json"), "benchmark": benchmark.id, "status": "running",
                "train": {"train_time_s": 0.0, "images_seen": 0, "epochs": 0, "monitors": {}, "collapsed": False,
                          "segments": []}}
        run_dir = Path(runs_dir) / benchmark.id / info["run_id"]
        atomic_write_json(run_dir / "run.json", info)  # written first so an interrupted run can resume
    with run_lock(run_dir):  # one trainer per run folder: a second resume of it is refused
        if not is_worker_rank(cfg.world_size):  # a kill during a save left temp files: this process owns the folder
            remove_orphan_temps(run_dir / "checkpoints" / "last.ckpt")
        _fit_and_save(method, cfg, info, run_dir, benchmark, data, results_dir, progress, resume is not None, log)
    return run_dir


def _train_on_worker_rank(cfg: TrainConfig, benchmark: Benchmark, *, resume: str | Path | None,
                          data: BenchData | None, data_root, cache_dir, imagenet_root, datasets_root=None) -> None:
    """A process of rank > 0 trains in lock-step with rank 0 but owns nothing: its run folder is temporary (a
    resumed run's run.json is copied and its checkpoints linked in, so it restores the same step), it neither
    probes nor writes a record. Rank 0 writes the run folder, encoder and record."""
    data = data or load_benchmark_data(benchmark, data_root, cache_dir, imagenet_root, datasets_root)
    with tempfile.TemporaryDirectory(prefix="bench-rank-") as tmp:
        run, info = None, None
        if resume is not None:
            run = Path(tmp) / "run"
            run.mkdir()
            shutil.copy2(Path(resume) / "run.json", run / "run.json")
            if (Path(resume) / "checkpoints").is_dir():
                (run / "checkpoints").symlink_to((Path(resume) / "checkpoints").resolve(), target_is_directory=True)
            info = resume_info(run)
        _train(cfg, info, benchmark, data, runs_dir=tmp, recipe=None, results_dir=None, progress=False, resume=run,
               log=None)


def _start_segment(info: dict, cfg: TrainConfig, run_dir: Path) -> dict:
    """Append this training session (a first start or a resume) to ``run.json``'s ``train.segments`` before it
    trains: the code (git sha), machine and library versions each part of a run was trained with (and
    ``cpu_bf16: widened`` when bf16 ran through ``bench.cpu_bf16``). ``ended_at`` is filled when the session
    finishes training; an interrupted one keeps only ``started_at``."""
    from bench.trainer import widens_cpu_bf16
    segment = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "git_sha": git_sha(REPO_ROOT), "hardware": collect_hardware(), "env": collect_env()}
    if widens_cpu_bf16(cfg):
        segment["cpu_bf16"] = "widened"
    info["train"].setdefault("segments", []).append(segment)
    atomic_write_json(run_dir / "run.json", info)
    return segment


def _fit_and_save(method, cfg: TrainConfig, info: dict, run_dir: Path, benchmark: Benchmark, data: BenchData,
                  results_dir, progress: bool, resume: bool, log: Callable[[str], None] | None) -> None:
    if method.trainable and cfg.epochs > 0:
        from bench.trainer import fit
        segment = _start_segment(info, cfg, run_dir)
        start = time.perf_counter()
        try:
            result = fit(method, data.train.images, data.train.labels, cfg, run_dir,
                         num_classes=len(data.train.classes), progress=progress, resume=resume, log=log)
        except TrainingError as e:
            if results_dir is not None:
                write_record(RunRecord(**_record_base(info, benchmark, data), status="failed", error=str(e),
                                       wall_time_s=time.perf_counter() - start, images_seen=0, scores={},
                                       selected={}, training=info["train"]["segments"]), results_dir)
            raise
        segment["ended_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        info["train"] = {"train_time_s": result.train_time_s, "images_seen": result.images_seen,
                         "views_seen": result.views_seen,
                         "epochs": result.epochs, "monitors": result.monitors, "collapsed": result.collapsed,
                         "monitor_history": result.monitor_history, "segments": info["train"]["segments"]}
    info["status"] = "trained"
    atomic_torch_save(method.encoder.state_dict(), run_dir / "encoder.pt")
    atomic_write_json(run_dir / "run.json", info)


def run_info(run_dir: str | Path) -> dict:
    """A run folder's ``run.json``; one BenchError line naming the folder when it is missing or unreadable."""
    return read_run_json(run_dir, f"{run_dir} is not a readable run folder (needs run.json + encoder.pt)")


def run_benchmark_of(run_dir: str | Path) -> Benchmark:
    """The benchmark a run folder was trained on (its run.json's ``benchmark``; older folders: the
    ``runs/<benchmark>/<run_id>`` parent), for ``bench probe RUN_DIR`` without ``--benchmark``."""
    from bench.benchmarks import get_benchmark
    bench_id = run_info(run_dir).get("benchmark") or Path(run_dir).resolve().parent.name
    try:
        return get_benchmark(bench_id)
    except ConfigError:
        raise BenchError(f"{run_dir} was trained on {bench_id!r}, not a named benchmark: give --benchmark, or "
                         f"--data for an ad-hoc one") from None


def load_encoder(run_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the encoder saved by ``train_run`` (weights loaded with weights_only=True)."""
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    if info.get("status", "trained") != "trained":
        raise BenchError(f"{run_dir} has not finished training (status {info.get('status')!r}); "
                         f"continue it with `bench train --resume {run_dir}`")
    try:
        state = read_torch_data(run_dir / "encoder.pt")
    except OSError as e:
        raise BenchError(f"cannot load the encoder of {run_dir}: {e.strerror or e} ({run_dir / 'encoder.pt'})") from None
    except BenchError as e:
        raise BenchError(f"cannot load the encoder of {run_dir}: {e}; train the run again") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchError(f"cannot load the encoder of {run_dir}: {run_dir / 'encoder.pt'} holds a "
                         f"{type(state).__name__}, not a state_dict of tensors; train the run again")
    method = build_method(_run_config(info, run_dir, "cannot load the encoder of"))
    try:
        method.encoder.load_state_dict(state)
    except RuntimeError as e:  # keys or shapes differ from what the run's config builds
        raise BenchError(f"cannot load the encoder of {run_dir}: encoder.pt does not fit the encoder its run.json "
                         f"config builds ({str(e).splitlines()[0][:160]}); train the run again") from None
    return method.encoder, info


def probe_run(run_dir: str | Path, benchmark: Benchmark, *, results_dir: str | Path | None = "results",
              data: BenchData | None = None, probes: tuple[str, ...] | None = None,
              data_root: str | None = None, cache_dir: str | None = None,
              imagenet_root: str | None = None, datasets_root: str | None = None,
              log: Callable[[str], None] | None = print) -> RunRecord:
    """Probe a trained run's frozen encoder on the benchmark and write its record under ``results_dir`` (None:
    only return it); a line per probe to ``log``."""
    from probes.evaluate import evaluate_encoder  # training never needs the probes
    start = time.perf_counter()
    encoder, info = load_encoder(run_dir)
    data = data or load_benchmark_data(benchmark, data_root, cache_dir, imagenet_root, datasets_root)
    check_modality(TrainConfig(**info["config"]), data.train)
    report = evaluate_encoder(encoder, data.train, data.eval, benchmark, probes=probes, cache_dir=cache_dir, log=log)
    train = info["train"]
    images, views = train["images_seen"], train.get("views_seen")
    if views is None and images:  # trained before views_seen existed: its images_seen counted views
        images, views = None, images
    record = RunRecord(
        **_record_base(info, benchmark, data), status="collapsed" if train["collapsed"] else "ok",
        wall_time_s=train["train_time_s"] + time.perf_counter() - start, train_time_s=train["train_time_s"],
        images_seen=images, views_seen=views or 0, params=sum(p.numel() for p in encoder.parameters()),
        epochs=train["epochs"], **probe_fields(report), monitors=train["monitors"], training=train.get("segments", []),
    )
    if results_dir is not None:
        write_record(record, results_dir)
    return record


def run_benchmark(cfg: TrainConfig, benchmark: Benchmark, *, results_dir: str | Path = "results",
                  runs_dir: str | Path = "runs", recipe: str | None = None, data: BenchData | None = None,
                  progress: bool = True, probes: tuple[str, ...] | None = None,
                  data_root: str | None = None, cache_dir: str | None = None,
                  imagenet_root: str | None = None, datasets_root: str | None = None,
                  resume: str | Path | None = None, log: Callable[[str], None] | None = print) -> RunRecord | None:
    """Train + probe + record (None on a process of rank > 0, which only trains); ``log`` gets the epoch lines
    (where no progress bar is drawn) and probe lines. ``resume``: continue that interrupted run folder with its own
    config (``cfg`` is ignored) and probe it; the data is loaded once for both."""
    if resume is not None:
        cfg = _run_config(resume_info(resume), resume)
    check_config(cfg)  # before any data is looked up
    if is_worker_rank(cfg.world_size):
        return train_run(cfg, benchmark, data=data, data_root=data_root, cache_dir=cache_dir,
                         imagenet_root=imagenet_root, datasets_root=datasets_root, resume=resume)
    data = data or load_benchmark_data(benchmark, data_root, cache_dir, imagenet_root, datasets_root)
    run_dir = train_run(cfg, benchmark, runs_dir=runs_dir, recipe=recipe, data=data, results_dir=results_dir,
                        progress=progress, resume=resume, log=log)
    return probe_run(run_dir, benchmark, results_dir=results_dir, data=data, probes=probes, cache_dir=cache_dir,
                     log=log)


def train(method: str | TrainConfig | None = None, benchmark: Benchmark | str | None = None, *,
          recipe: str | None = None, probe: bool = True, results_dir: str | Path | None = None,
          runs_dir: str | Path = "runs", resume: str | Path | None = None, probes: tuple[str, ...] | None = None,
          progress: bool = True, data_root: str | None = None, cache_dir: str | None = None,
          imagenet_root: str | None = None, datasets_root: str | None = None,
          log: Callable[[str], None] | None = print, **overrides) -> RunRecord | Path | None:
    """``bench.train``: train ``method`` on ``benchmark``'s train split (id or Benchmark; default imagenette64-v1)
    and, with ``probe``, score its frozen encoder into a run record (written under ``results_dir`` when given;
    ``bench run``); with ``probe=False`` return the run folder (``bench train``).

    ``method``: a method name, ``module:Class`` or ``plugin.py[:Class]``, configured as ``bench run`` does it (the
    ``recipe`` given, else the one named like the method, else the benchmark's budget; then ``overrides``, any
    config key: ``epochs=2, seed=1, method_kwargs={"temperature": 0.2}``), or a ready :class:`TrainConfig`.
    ``resume``: continue an interrupted run folder with its own config. None on a DDP process of rank > 0."""
    from bench.benchmarks import benchmark_for
    from bench.config import run_config
    if resume is not None:
        resume_info(resume)  # a missing or unreadable run folder: one line, before anything else
    if isinstance(benchmark, Benchmark):
        bench = benchmark
    else:  # a resumed run continues on the benchmark it was trained on unless told otherwise
        bench = run_benchmark_of(resume) if benchmark is None and resume is not None else benchmark_for(benchmark)
    if isinstance(method, TrainConfig) or resume is not None:
        if overrides:
            raise ConfigError(f"config overrides ({', '.join(overrides)}) go with a method name, not with a "
                              f"TrainConfig or a resumed run")
        cfg = method if isinstance(method, TrainConfig) else None
    else:
        resolved = run_config(bench, method, recipe, **overrides)
        cfg, recipe = resolved.config, resolved.recipe
    kw = dict(progress=progress, data_root=data_root, cache_dir=cache_dir, imagenet_root=imagenet_root,
              datasets_root=datasets_root, log=log)
    if probe:
        return run_benchmark(cfg, bench, results_dir=results_dir, runs_dir=runs_dir, recipe=recipe, probes=probes,
                             resume=resume, **kw)
    return train_run(cfg, bench, runs_dir=runs_dir, recipe=recipe, results_dir=results_dir, resume=resume, **kw)
