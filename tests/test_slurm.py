"""`--slurm`: spec parsing, the sbatch script (fake sbatch/srun on PATH), the command the job re-runs, an
in-process run with submitit's debug executor, and the requeue as `--resume` after the time-limit warning."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main, slurm_job
from bench.slurm import SIGNAL_DELAY_S, ResumePlan, SlurmJob, executor_parameters, parse_spec, strip_slurm_flag

submitit = pytest.importorskip("submitit")


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch / srun stand-ins: sbatch answers like SLURM with job id 4242."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).write_text('#!/bin/sh\necho "Submitted batch job 4242"\n')
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("BENCH_SLURM_CLUSTER", raising=False)


def test_spec_gives_executor_parameters():
    spec = parse_spec("partition=gpu, time=60,cpus_per_task=6,mem_gb=64,account=X,qos=Y,constraint=Z,")
    assert executor_parameters(spec, devices=4, nodes=2, name="bench-train") == dict(
        name="bench-train", timeout_min=60, nodes=2, tasks_per_node=4, gpus_per_node=4, cpus_per_task=6,
        mem_gb=64.0, slurm_partition="gpu", slurm_signal_delay_s=SIGNAL_DELAY_S, slurm_account="X",
        slurm_qos="Y", slurm_constraint="Z")
    cpu = executor_parameters(parse_spec("partition=cpu,gpus_per_node=0"), devices=2, nodes=1)
    assert "gpus_per_node" not in cpu and cpu["tasks_per_node"] == 2 and cpu["timeout_min"] == 720


@pytest.mark.parametrize("spec,needle", [
    ("partiton=gpu", "unknown --slurm key 'partiton' (did you mean 'partition'?)"),
    ("partition", "--slurm expects KEY=VALUE items"),
    ("partition=gpu,time=12h", "bad --slurm value for 'time'"),
    ("time=60", "--slurm needs partition=NAME"),
    ("partition=gpu,partition=cpu", "given twice"),
    ("partition=gpu,gpus_per_node=2", "gpus_per_node=2 but 4 process(es) per node"),
])
def test_spec_mistakes_are_one_line(spec, needle, fake_slurm, capsys):
    assert main(["train", "--method", "simclr", "--devices", "4", "--batch-size", "64", "--slurm", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and err.startswith("error: ")


def test_job_command_line_drops_only_the_slurm_flag():
    rest = ["train", "--method", "simclr", "--epochs", "3"]
    assert strip_slurm_flag([*rest[:3], "--slurm", "partition=gpu,time=5", *rest[3:]]) == rest
    assert strip_slurm_flag(["--debug", *rest, "--slurm=partition=gpu"]) == ["--debug", *rest]
    assert strip_slurm_flag([*rest, "--slu", "partition=gpu"]) == rest  # argparse's unambiguous prefix


def test_sbatch_script_and_the_submitted_command(tmp_path, fake_slurm, capsys):
    runs = tmp_path / "runs"
    argv = ["run", "--method", "simclr", "--nodes", "2", "--batch-size", "64", "--runs-dir", str(runs),
            "--slurm", "partition=gpu,time=60,gpus_per_node=4,mem_gb=64,account=X,qos=Y,constraint=Z"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("submitted SLURM job 4242 (2 node(s) x 4 task(s)") and str(runs / "slurm" / "4242") in out
    script = (runs / "slurm" / "4242" / "4242_submission.sh").read_text()
    for line in ("--partition=gpu", "--time=60", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                 "--cpus-per-task=8", "--mem=64GB", "--account=X", "--qos=Y", "--constraint=Z",
                 f"--signal=USR2@{SIGNAL_DELAY_S}", "--job-name=bench-run-simclr"):
        assert f"#SBATCH {line}\n" in script, line
    job = submitit.helpers.DelayedSubmission.load(runs / "slurm" / "4242" / "4242_submitted.pkl").function
    # the job re-runs the command without --slurm; gpus_per_node without --devices became one process per GPU
    assert job.steps == [[*argv[:-2], "--devices", "4"]]


def test_without_submitit_one_line(monkeypatch, fake_slurm, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(["train", "--method", "simclr", "--slurm", "partition=gpu"]) == 2
    assert capsys.readouterr().err.strip() == 'error: --slurm needs submitit: pip install -e ".[slurm]"'


@pytest.mark.slow
def test_debug_cluster_runs_the_job_in_process(tmp_path, cli_args, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_SLURM_CLUSTER", "debug")
    assert main(["train", "--method", "simclr", "--epochs", "1", *cli_args(tmp_path),
                 "--slurm", "partition=debug,time=5"]) == 0
    assert "submitted SLURM job DEBUG_" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").glob("custom-*/*")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "trained" and (run_dir / "encoder.pt").exists()
    assert len(list((tmp_path / "runs" / "slurm").glob("DEBUG_*"))) == 1


@pytest.mark.slow
def test_time_limit_warning_requeues_as_resume(tmp_path, tiny_folder, cli_args, monkeypatch):
    """USR2 mid-epoch (SLURM's warning before the time limit): training stops with last.ckpt at that step,
    submitit's handler is asked to requeue, and the requeued job (checkpoint()) finishes the run."""
    from bench.trainer import SSLModule

    original = SSLModule.on_train_batch_end

    def warn_at_step(self, outputs, batch, batch_idx):
        original(self, outputs, batch, batch_idx)
        if self.global_step == 2:
            os.kill(os.getpid(), signal.SIGUSR2)

    monkeypatch.setattr(SSLModule, "on_train_batch_end", warn_at_step)
    requeued = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: requeued.append(signum))  # submitit's stand-in
    try:
        job = slurm_job(["train", "--method", "simclr", "--epochs", "1", *cli_args(tmp_path)])
        assert job() == 143 and requeued == [signal.SIGUSR2]
        (run_dir,) = (tmp_path / "runs").glob("custom-*/*")
        assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
        assert job.resume == [["train", "--resume", str(run_dir.resolve()), "--data", f"imagefolder:{tiny_folder}",
                               "--cache-dir", str(tmp_path / "cache"), "--no-progress"]]
        monkeypatch.setattr(SSLModule, "on_train_batch_end", original)
        assert job.checkpoint().result() == 0
    finally:
        signal.signal(signal.SIGUSR2, previous)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "trained" and info["train"]["images_seen"] == 16 * 4
    assert info["train"]["views_seen"] == 2 * 16 * 4  # SimCLR: two views of each of the 4 steps x 16 images
    assert SlurmJob([["train"]], main).checkpoint() is None  # not warned: submitit does not requeue


def test_interrupted_run_resumes_then_probes():
    argv = ["--debug", "run", "--method", "simclr", "--benchmark", "imagenette64-v1", "--results", "res",
            "--runs-dir", "r", "--slurm", "partition=gpu"]
    run_dir = str(Path("r/x").resolve())
    assert slurm_job(argv).plan.steps("r/x") == [
        ["--debug", "train", "--resume", run_dir, "--benchmark", "imagenette64-v1"],
        ["--debug", "probe", run_dir, "--benchmark", "imagenette64-v1", "--results", "res"]]
    assert ResumePlan(data=("--data", "d")).steps("r/x") == [["train", "--resume", run_dir, "--data", "d"]]


def test_slurm_does_not_import_the_cli():
    """The CLI hands the job its entry point and resume plan: bench.slurm stays below bench.cli."""
    import ast
    import bench.slurm
    tree = ast.parse(Path(bench.slurm.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "bench.cli" not in imported and "bench" not in imported
