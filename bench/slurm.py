"""``bench train|run ... --slurm partition=P[,KEY=VALUE...]``: submit the same command as a SLURM job with
submitit, print its id and log folder, and return at once.

The job runs the CLI's entry point (``bench.cli.main``, handed in by the CLI: this module never imports it) with
the same arguments minus ``--slurm`` on ``--nodes`` nodes x ``--devices`` tasks per node, one task per GPU, so
Lightning's SLURMEnvironment takes each process's rank from srun (rank 0 owns the run folder and the record, as
under ``srun`` by hand). Logs go to ``<runs-dir>/slurm/<job id>/``.

Time limit and requeue: SLURM sends USR2 ``SIGNAL_DELAY_S`` seconds before the time limit (submitit's warning
signal); the job turns it into the SIGTERM the trainer already handles (last.ckpt saved at the current step), then
requeues itself through submitit as ``bench train --resume RUN_DIR`` (after ``bench run``: followed by ``bench
probe RUN_DIR`` on rank 0; the CLI describes both as a :class:`ResumePlan`), at most ``slurm_max_num_timeout`` (3)
times for time-outs. A plain SIGTERM (``scancel``) stops the run the same way without requeueing; continue it with
``bench train --resume RUN_DIR``.

Hidden switch for tests and dry runs: ``BENCH_SLURM_CLUSTER=debug`` (or ``submit_job(..., cluster="debug")``)
runs the job in this process with submitit's debug executor, ``local`` in a subprocess; the default is ``slurm``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import BenchError, ConfigError, Interrupted

SIGNAL_DELAY_S = 120  # USR2 this long before the time limit: time to stop, save last.ckpt and requeue
EXAMPLE = "partition=gpu,time=720"


class SlurmSpec(BaseModel):
    """The ``--slurm`` keys. GPUs per node default to --devices (one task per GPU); 0 asks for none (CPU nodes)."""

    model_config = ConfigDict(extra="forbid")

    partition: str
    time: int = Field(720, gt=0)              # minutes
    gpus_per_node: int | None = Field(None, ge=0)
    cpus_per_task: int = Field(8, gt=0)
    mem_gb: float | None = Field(None, gt=0)  # per node
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    name: str | None = None                   # job name (default bench-<command>)


def parse_spec(text: str) -> SlurmSpec:
    """``partition=gpu,time=720,...`` -> SlurmSpec; any mistake is one ConfigError line."""
    keys = list(SlurmSpec.model_fields)
    values: dict[str, str] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key or not value:
            raise ConfigError(f"--slurm expects KEY=VALUE items separated by commas (e.g. {EXAMPLE}), got {item!r}")
        if key not in keys:
            hint = get_close_matches(key, keys, n=1)
            raise ConfigError(f"unknown --slurm key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; keys: {', '.join(keys)}")
        if key in values:
            raise ConfigError(f"--slurm key {key!r} given twice")
        values[key] = value
    if "partition" not in values:
        raise ConfigError(f"--slurm needs partition=NAME, the SLURM partition to queue on (e.g. {EXAMPLE})")
    try:
        return SlurmSpec(**values)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"bad --slurm value for {where!r}: {err['msg']} (got {err.get('input')!r})") from None


def executor_parameters(spec: SlurmSpec, *, devices: int, nodes: int, name: str = "bench") -> dict:
    """submitit ``AutoExecutor.update_parameters`` keywords: ``nodes`` x ``devices`` tasks, one per GPU."""
    params = dict(name=spec.name or name, timeout_min=spec.time, nodes=nodes, tasks_per_node=devices,
                  gpus_per_node=devices if spec.gpus_per_node is None else spec.gpus_per_node or None,
                  cpus_per_task=spec.cpus_per_task, mem_gb=spec.mem_gb, slurm_partition=spec.partition,
                  slurm_signal_delay_s=SIGNAL_DELAY_S, slurm_account=spec.account, slurm_qos=spec.qos,
                  slurm_constraint=spec.constraint)
    return {k: v for k, v in params.items() if v is not None}


def _is_slurm_flag(token: str) -> bool:
    name = token.split("=", 1)[0]
    return len(name) >= 4 and "--slurm".startswith(name)  # argparse also takes unambiguous prefixes (--slu)


def strip_slurm_flag(argv: list[str]) -> list[str]:
    """The command line the job runs: ``argv`` without ``--slurm SPEC`` / ``--slurm=SPEC``."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif _is_slurm_flag(token):
            skip = "=" not in token
        else:
            out.append(token)
    return out


@dataclass(frozen=True)
class ResumePlan:
    """What continues an interrupted ``bench train`` / ``bench run`` command: ``train --resume RUN_DIR`` with the
    command's data options (``data``: flag, value, ...; ``train_flags``: e.g. ``--no-progress``) and, after ``bench
    run``, ``probe RUN_DIR`` into the same results folder (``probe_results``). ``top``: options before the command
    (``--debug``). The CLI builds it from the command's parsed options."""

    data: tuple[str, ...] = ()
    train_flags: tuple[str, ...] = ()
    probe_results: str | None = None
    top: tuple[str, ...] = ()

    def steps(self, run_dir: str | Path) -> list[list[str]]:
        run_dir = str(Path(run_dir).resolve())
        train = [*self.top, "train", "--resume", run_dir, *self.data, *self.train_flags]
        if self.probe_results is None:
            return [train]
        return [train, [*self.top, "probe", run_dir, *self.data, "--results", self.probe_results]]


def _warning_signal() -> signal.Signals:
    import submitit
    return getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)


@dataclass
class SlurmJob:
    """What each SLURM task runs: ``entry`` (the ``bench`` CLI's main) on every argv of ``steps`` in turn (steps after
    the first on rank 0 only). When training stops on the time-limit warning, ``plan`` gives the commands that
    continue the run; submitit calls ``checkpoint`` to requeue them."""

    steps: list[list[str]]
    entry: Callable[[list[str]], int]
    plan: ResumePlan = field(default_factory=ResumePlan)
    resume: list[list[str]] | None = None  # set when training stopped on the warning signal
    warned: bool = False

    def __call__(self) -> int:
        from bench.distributed import launch_rank
        warning = _warning_signal()
        requeue = signal.signal(warning, self._stop_training)  # submitit's handler: checkpoint(), requeue, exit
        try:
            code = 0
            for i, argv in enumerate(self.steps):
                if (i and launch_rank() != 0) or code:
                    break
                code = self._run(argv, requeue, warning)
            return code
        finally:
            signal.signal(warning, requeue)

    def _run(self, argv: list[str], requeue, warning) -> int:
        try:
            return self.entry(["--debug", *argv])  # --debug: errors come here, Interrupted with its run folder
        except BenchError as e:
            print(f"error: {e}", file=sys.stderr)
            if isinstance(e, Interrupted) and self.warned and e.run_dir is not None:
                self.resume = self.plan.steps(e.run_dir)
                if callable(requeue):
                    requeue(warning, None)
            return e.exit_code

    def _stop_training(self, signum, frame) -> None:
        """The time-limit warning: stop as on SIGTERM (the trainer saves last.ckpt at this step, then raises
        Interrupted) and requeue once it has stopped. Outside training the SIGTERM handler is submitit's bypass."""
        self.warned = True
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler):
            handler(signal.SIGTERM, frame)

    def checkpoint(self, *args, **kwargs):
        """submitit's requeue hook: the requeued job continues the interrupted run (None: no requeue)."""
        if not self.resume:
            return None
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(SlurmJob(self.resume, self.entry, self.plan))


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise BenchError('--slurm needs submitit: pip install -e ".[slurm]"') from None
    return submitit


def check_world(spec: SlurmSpec, devices: int) -> None:
    """One process per GPU: ``gpus_per_node`` (when given) must equal the processes per node (``--devices``)."""
    if spec.gpus_per_node and spec.gpus_per_node != devices:
        raise ConfigError(f"--slurm gpus_per_node={spec.gpus_per_node} but {devices} process(es) per node "
                          f"(--devices): one process per GPU, so give one of them or the same number")


def job_name(command: str, method: str | None = None) -> str:
    """``bench-run-simclr``; a method that is a path or module reference is left out."""
    return f"bench-{command}" + (f"-{method}" if method and re.fullmatch(r"[\w.-]+", method) else "")


def submit_job(job: SlurmJob, spec: SlurmSpec, *, devices: int, nodes: int, folder: str | Path, name: str = "bench",
               cluster: str | None = None) -> int:
    """Submit ``job`` on ``nodes`` x ``devices`` tasks with logs under ``folder/<job id>/``; print one line and
    return 0 (with the debug cluster: run it here and return its exit code)."""
    check_world(spec, devices)
    submitit = _import_submitit()
    cluster = cluster or os.environ.get("BENCH_SLURM_CLUSTER") or "slurm"
    if cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise BenchError("--slurm needs SLURM's sbatch and srun on PATH: submit from a login node of the cluster")
    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=cluster)
    executor.update_parameters(**executor_parameters(spec, devices=devices, nodes=nodes, name=name))
    submitted = executor.submit(job)
    print(f"submitted SLURM job {submitted.job_id} ({nodes} node(s) x {devices} task(s), partition {spec.partition}, "
          f"{spec.time} min); logs in {submitted.paths.folder}")
    return int(submitted.result()) if cluster == "debug" else 0
