"""Run folders (``runs/<benchmark-id>/<run_id>/``): one process at a time trains a run, and ``bench runs``
says where every run stands.

A training process holds an exclusive ``flock`` on ``<run>/.lock`` (the kernel drops it when the process
ends, however it ends), so a second ``bench train --resume`` or ``bench reference`` of the same run is
refused with one line instead of two trainers writing one checkpoint. The same lock tells a run that is
training now from one that was interrupted.
"""

from __future__ import annotations

import csv
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.records import PLAIN_NAME

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the rest works)
    fcntl = None

__all__ = ["STATES", "RunState", "list_runs", "lock_holder", "metrics_logs", "read_run_json", "resume_info", "run_lock"]

LOCK_NAME = ".lock"
#: what ``bench runs`` tells apart (see :class:`RunState`)
STATES = ("recorded", "trained", "training", "interrupted", "empty")


def metrics_logs(run_dir: str | os.PathLike) -> list[Path]:
    """The run's Lightning CSV logs, one per training segment (``logs/metrics.csv``, ``logs/resumed-*/...``),
    oldest first."""
    return sorted((Path(run_dir) / "logs").glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)


def read_run_json(run_dir: str | os.PathLike, fail: str) -> dict:
    """The ``run.json`` of a run folder: a mapping with a ``config`` mapping and a ``run_id`` that is a plain file
    name (it names the record: ``results/<benchmark>/<run_id>.json``; ``../x`` would write elsewhere). Anything
    else is one BenchError line starting with ``fail``."""
    try:
        info = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"{fail}: no readable run.json ({e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise BenchError(f"{fail}: its run.json holds no config mapping")
    run_id = info.get("run_id")
    if not isinstance(run_id, str) or not PLAIN_NAME.fullmatch(run_id):
        raise BenchError(f"{fail}: its run.json has run_id {run_id!r}, not a plain file name (letters, digits, "
                         f"'_', '-', '.'; it names the run's record file)")
    return info


def resume_info(run_dir: str | os.PathLike) -> dict:
    """The ``run.json`` of a run folder to continue (:func:`read_run_json`); one BenchError line naming the
    folder when it is missing or unreadable. Cheap: callers check it before any data is loaded."""
    return read_run_json(run_dir, f"cannot resume {run_dir}")


@contextmanager
def run_lock(run_dir: str | os.PathLike):
    """Hold ``run_dir``'s training lock for the ``with`` block; a lock held by another process is a one-line
    BenchError naming its pid."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise BenchError(f"{run_dir} is being trained by another process (pid {pid}); wait for it, or stop "
                                 f"it (SIGTERM saves a checkpoint) and resume with `bench train --resume {run_dir}`") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def lock_holder(run_dir: str | os.PathLike) -> str | None:
    """The pid (as written) of the process training ``run_dir`` now, or None when no process holds its lock."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunState:
    """Where one run folder stands. ``state``: recorded (a record exists), trained (encoder saved, not probed),
    training (a process holds its lock), interrupted (resumable from its checkpoint) or empty (nothing to
    resume: started and stopped before its first checkpoint)."""

    run_dir: Path
    benchmark: str
    run_id: str
    recipe: str
    seed: int | None
    state: str
    epoch: int          # epochs done (from the training log while training or interrupted)
    epochs: int         # epochs the config asks for
    step: int | None    # last logged optimiser step
    updated: float      # mtime of the newest checkpoint / log / encoder / run.json
    detail: str         # record status, lock holder pid, or the command that continues the run

    @property
    def progress(self) -> str:
        live = self.state in ("training", "interrupted") and self.step is not None
        return f"{self.epoch}/{self.epochs} ep" + (f", step {self.step}" if live else "")


def _last_logged(run_dir: Path) -> tuple[int | None, int | None]:
    """(epochs done, step) from the last row of the newest ``logs/**/metrics.csv`` (Lightning's CSVLogger). Its
    ``epoch`` column counts from 0: a row that closes an epoch (a ``*_epoch`` metric set) means epoch + 1 are done,
    a step row inside an epoch that it is still under way (epoch done)."""
    for path in reversed(metrics_logs(run_dir)):
        try:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            continue
        if rows and rows[-1].get("epoch"):
            last, step = rows[-1], rows[-1].get("step")
            closed = any(k.endswith("_epoch") and v not in (None, "") for k, v in last.items() if k)
            return int(float(last["epoch"])) + closed, int(float(step)) if step else None
    return None, None


def _state(run_dir: Path, benchmark: str, results_dir: Path) -> RunState | None:
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    run_id, cfg = info.get("run_id", run_dir.name), info.get("config", {})
    epochs, train = int(cfg.get("epochs", 0)), info.get("train", {})
    record = results_dir / benchmark / f"{run_id}.json"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    epoch, step = _last_logged(run_dir)
    holder = lock_holder(run_dir)
    if record.exists():
        try:
            status = json.loads(record.read_text()).get("status", "?")
        except (OSError, ValueError):
            status = "unreadable"
        state, detail, done = "recorded", f"{status}: {record}", int(train.get("epochs", epochs))
    elif holder is not None:
        state, detail, done = "training", f"pid {holder}", 0 if epoch is None else epoch
    elif info.get("status") == "trained" and (run_dir / "encoder.pt").exists():
        state, detail, done = "trained", f"bench probe {run_dir} --benchmark {benchmark}", int(train.get("epochs", epochs))
    elif ckpt.exists():
        state, detail, done = "interrupted", f"bench train --resume {run_dir}", 0 if epoch is None else epoch
    else:
        state, detail, done = "empty", "no checkpoint: start it again", 0
    stamps = [p.stat().st_mtime for p in (run_dir / "run.json", ckpt, run_dir / "encoder.pt") if p.exists()]
    stamps += [p.stat().st_mtime for p in metrics_logs(run_dir)]
    return RunState(run_dir, benchmark, run_id, info.get("recipe") or info.get("method", "?"), cfg.get("seed"),
                    state, done, epochs, step, max(stamps), detail)


def list_runs(runs_dir: str | os.PathLike = "runs", results_dir: str | os.PathLike = "results",
              benchmark: str | None = None) -> list[RunState]:
    """Every run folder under ``runs_dir/<benchmark-id>/`` (one benchmark, or all), oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    bench_dirs = [root / benchmark] if benchmark else sorted(p for p in root.iterdir() if p.is_dir())
    out = []
    for bench_dir in bench_dirs:
        for run_dir in sorted(bench_dir.glob("*/")) if bench_dir.is_dir() else []:
            st = _state(run_dir, bench_dir.name, Path(results_dir))
            if st is not None:
                out.append(st)
    return out


def age(seconds_since_epoch: float, now: float | None = None) -> str:
    """'42 s' / '7 min' / '3.5 h' / '2 d' ago."""
    dt = max(0.0, (now or time.time()) - seconds_since_epoch)
    return f"{dt:.0f} s" if dt < 90 else f"{dt / 60:.0f} min" if dt < 5400 else \
        f"{dt / 3600:.1f} h" if dt < 48 * 3600 else f"{dt / 86400:.0f} d"
