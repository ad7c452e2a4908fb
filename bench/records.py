"""Run records: one JSON file per (run, benchmark version) under ``results/<benchmark-id>/<run_id>.json``.

A record says what ran (method, backbone, full config + hash, code version, data fingerprint,
environment, hardware), what it cost (wall time, images seen) and what it scored (percent, with the
probe hyper-parameters selected on the train hold-out). Records know nothing of training internals."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import secrets
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.errors import BenchError
from bench.io import atomic_write_json

__all__ = ["PLAIN_NAME", "BenchmarkRef", "DataRef", "Erratum", "RunRecord", "check_benchmark_id", "collect_env",
           "collect_hardware", "config_hash", "git_sha", "load_errata", "load_record", "load_records", "new_run_id",
           "probe_fields", "setup_hash", "write_record"]

ERRATA_FILE = "errata.yaml"
#: what a run_id or a benchmark id may be: each names a file or folder (no path separators, no leading dot)
PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BenchmarkRef(_Strict):
    name: str = Field(pattern=rf"^{PLAIN_NAME.pattern}$")  # with the version, names the records' folder
    version: int
    spec_hash: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"


class DataRef(_Strict):
    spec: str
    fingerprint: str


#: views per training image of the methods that wrote schema-1 records, whose ``images_seen`` counted views
#: (SimCLR's two views of 158,720 images were 317,440 "images seen"); used only to read those records
_SCHEMA1_VIEWS_PER_IMAGE = {"simclr": 2, "barlow-twins": 2, "naive-siamese": 2, "vicreg": 2, "ijepa": 1, "vjepa": 1}


def _schema1_counts(data: dict) -> dict:
    """A schema-1 record's ``images_seen`` was the number of *views*: it becomes ``views_seen``, and
    ``images_seen`` the training samples (views / views per image of its method; None where that is unknown)."""
    views = data.get("images_seen")
    method, kwargs = data.get("method"), (data.get("config") or {}).get("method_kwargs") or {}
    per_image = 2 + int(kwargs.get("local_crops", 4)) if method == "dino" else _SCHEMA1_VIEWS_PER_IMAGE.get(method)
    images = 0 if views == 0 else views // per_image if per_image and isinstance(views, int) else None
    return {**data, "views_seen": views, "images_seen": images}


class RunRecord(_Strict):
    #: 2: ``images_seen`` counts training samples and ``views_seen`` the augmented views (1: views, as images_seen)
    schema_version: int = 2
    run_id: str = Field(pattern=rf"^{PLAIN_NAME.pattern}$")  # becomes a file name
    status: Literal["ok", "failed", "collapsed"]
    method: str
    backbone: str
    recipe: str | None = None
    benchmark: BenchmarkRef
    data: DataRef
    seed: int = Field(ge=0)
    config: dict[str, Any]
    config_hash: str
    git_sha: str | None  # the code that probed (and, for a run trained in one go right before, trained)
    env: dict[str, Any]
    hardware: dict[str, Any]
    # times are finite seconds >= 0 and counts >= 0: an inf or a negative count is a broken record, not a cost
    wall_time_s: float = Field(ge=0, allow_inf_nan=False)
    train_time_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    probe_time_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    images_seen: int | None = Field(ge=0)  # training samples (an image with 2 views counts once); None: unknown (old)
    views_seen: int | None = Field(None, ge=0)  # augmented views the loss saw (SimCLR: 2 per image, DINO: 2 + locals)
    params: int | None = Field(None, ge=0)  # encoder parameter count (None in records written before it existed)
    epochs: int = Field(0, ge=0)
    scores: dict[str, float]
    selected: dict[str, dict[str, Any]]
    holdout: dict[str, float] = {}
    monitors: dict[str, float] = {}
    #: seconds per step of probing: ``features`` (extraction), ``tokens``, each probe, ``estimators``; they sum to
    #: probe_time_s ({} in records written before it existed)
    probe_times_s: dict[str, float] = {}
    #: label-free quality estimators of the frozen features (``probes.estimators``: rankme, alpha_req, lidar) and
    #: what they were computed on (split, rows, LiDAR's images x views and augmentation); {} in older records
    estimators: dict[str, float] = {}
    estimators_setup: dict[str, Any] = {}
    #: the few-shot probe's per-draw scores, chosen hyper-parameters and shot draws (``probes.fewshot``)
    fewshot: dict[str, Any] = {}
    error: str | None = None
    created_at: str
    # one entry per training session of the run (a start, then each resume): started_at, ended_at (absent if
    # interrupted), git_sha, hardware, env; empty for untrained baselines and records written before it existed
    training: list[dict[str, Any]] = []
    #: "trained": a run of this harness; "external": an encoder trained elsewhere (``bench eval --model``), whose
    #: ``model`` holds its spec, weights file + sha256, checkpoint layout and preprocessing
    origin: Literal["trained", "external"] = "trained"
    model: dict[str, Any] | None = None

    @property
    def train_hardware(self) -> list[dict[str, Any]]:
        """The machines that trained the run (its segments'), else the one that probed it."""
        return [s["hardware"] for s in self.training if s.get("hardware")] or [self.hardware]

    @model_validator(mode="before")
    @classmethod
    def _read_schema1(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("schema_version") == 1 and "views_seen" not in data:
            return _schema1_counts(data)
        return data

    @field_validator("scores")
    @classmethod
    def _percent(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            if not (math.isfinite(s) and 0.0 <= s <= 100.0):
                raise ValueError(f"score {k}={s} is not a finite percentage in [0, 100]")
        return v

    @model_validator(mode="after")
    def _status_consistent(self) -> RunRecord:
        if self.status == "ok" and not self.scores:
            raise ValueError("a record with status 'ok' needs at least one score")
        if self.status == "failed" and not self.error:
            raise ValueError("a record with status 'failed' needs an error message")
        return self


def probe_fields(report: dict) -> dict:
    """The RunRecord fields of a ``probes.evaluate.evaluate_encoder`` report: scores, selected, holdout, the
    probing time (total and per step), the label-free estimators and the few-shot details."""
    times = {k: round(v, 3) for k, v in report.get("probe_time_s", {}).items()}
    return dict(scores=report["scores"], selected=report["selected"], holdout=report.get("holdout", {}),
                probe_time_s=sum(report.get("probe_time_s", {}).values()), probe_times_s=times,
                estimators=report.get("estimators", {}), estimators_setup=report.get("estimators_setup", {}),
                fewshot=report.get("fewshot", {}))


def config_hash(config: dict) -> str:
    """sha256 (first 16 hex) of the config's canonical JSON (sorted keys, compact)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def setup_hash(config: dict) -> str:
    """:func:`config_hash` of everything but the seed: what the seeds a leaderboard row averages share."""
    return config_hash({k: v for k, v in config.items() if k != "seed"})


def _version(*dists: str) -> str | None:
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def collect_env() -> dict:
    """Python, key package versions (None when not installed) and the platform string."""
    env: dict[str, Any] = {"python": platform.python_version()}
    for key, dists in {"torch": ("torch",), "torchvision": ("torchvision",), "timm": ("timm",),
                       "lightning": ("lightning",), "faiss": ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu", "faiss"),
                       "numpy": ("numpy",)}.items():
        env[key] = _version(*dists)
    env["platform"] = platform.platform()
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_hardware() -> dict:
    """CPU model, vector ISA PyTorch uses (``cpu_isa``: e.g. AVX2, AVX512; CPU speeds differ several-fold
    between them) and count, RAM (GiB) and, when CUDA is available, GPU name and count."""
    hw: dict[str, Any] = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "ram_gb": None,
                          "gpu": None, "gpu_count": 0}
    try:
        hw["ram_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch
        hw["cpu_isa"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            hw["gpu"], hw["gpu_count"] = torch.cuda.get_device_name(0), torch.cuda.device_count()
    except Exception:  # no torch / broken driver: record what we know
        pass
    return hw


def git_sha(repo_root: str | os.PathLike) -> str | None:
    """``git rev-parse HEAD`` of repo_root, with ``-dirty`` when the tree has changes; outside git (a copy of the
    tree without .git, e.g. on a rented GPU machine) ``$BENCH_GIT_SHA`` if set, else None."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo_root), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        return sha + ("-dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("BENCH_GIT_SHA") or None


def new_run_id(method: str, seed: int) -> str:
    """``20250101T120000Z-simclr-s0-a1b2c3``: sortable by time, unique, safe as a file name."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", method).strip("._") or "method"
    return f"{stamp}-{safe}-s{seed}-{secrets.token_hex(3)}"


def write_record(record: RunRecord, results_dir: str | os.PathLike) -> Path:
    """Write ``results_dir/<benchmark-id>/<run_id>.json`` atomically; an existing file is never replaced."""
    path = Path(results_dir) / record.benchmark.id / f"{record.run_id}.json"
    return atomic_write_json(path, record.model_dump(mode="json"), exclusive=True)


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "record"
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def load_record(path: str | os.PathLike) -> RunRecord:
    """Read and validate one record; unreadable, non-JSON or off-schema files raise a one-line BenchError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BenchError(f"cannot read run record {path}: {e.strerror or e}") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise BenchError(f"run record {path} is not valid JSON: {str(e).splitlines()[0]}") from None
    try:
        return RunRecord.model_validate(data)
    except ValidationError as e:
        raise BenchError(f"run record {path} does not match the schema: {_one_line(e)}") from None


def check_benchmark_id(benchmark_id: str) -> str:
    """``benchmark_id`` if it is a plain name (it names the folders of records and leaderboards), else one
    BenchError line: an absolute path or ``../x`` would read or write outside them."""
    if not PLAIN_NAME.fullmatch(benchmark_id):
        raise BenchError(f"benchmark id {benchmark_id!r} is not a plain name (NAME-vN: letters, digits, '_', '-', "
                         f"'.'); it names the folder of its records and leaderboard - see `bench benchmarks`")
    return benchmark_id


def load_records(results_dir: str | os.PathLike, benchmark_id: str | None = None) -> list[RunRecord]:
    """All records under ``results_dir/<id>/*.json`` (one benchmark id, or all); [] if the folder is absent."""
    root = Path(results_dir)
    if benchmark_id is not None:
        check_benchmark_id(benchmark_id)
    pattern = f"{benchmark_id}/*.json" if benchmark_id else "*/*.json"  # a plain name: nothing to escape
    return [load_record(p) for p in sorted(root.glob(pattern)) if p.is_file()]


class Erratum(_Strict):
    """A known defect of committed records (records themselves are never edited): ``runs`` (run ids), a ``note``
    saying what is wrong, and ``exclude``: leave them out of every leaderboard mean and std."""
    runs: list[str] = Field(min_length=1)
    note: str = Field(min_length=1)
    exclude: bool = False


def load_errata(results_dir: str | os.PathLike) -> dict[str, Erratum]:
    """``results_dir/errata.yaml`` (a list of :class:`Erratum` mappings) as run_id -> erratum; {} without the file."""
    import yaml
    path = Path(results_dir) / ERRATA_FILE
    if not path.is_file():
        return {}
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        errata = [Erratum.model_validate(item) for item in items] if isinstance(items, list) else None
    except yaml.YAMLError as e:
        raise BenchError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except ValidationError as e:
        raise BenchError(f"{path} does not match the errata schema: {_one_line(e)}") from None
    if errata is None:
        raise BenchError(f"{path} must be a list of errata (runs, note, exclude)")
    return {run_id: e for e in errata for run_id in e.runs}
