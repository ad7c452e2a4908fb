"""The `bench` CLI end to end on a tiny image folder: run, probe, leaderboard, resume, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import build_parser, main
from bench.io import atomic_torch_save
from bench.records import load_records


def test_every_command_has_help(capsys):
    parser = build_parser()
    for cmd in ("demo", "run", "train", "probe", "eval", "methods", "benchmarks", "leaderboard"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([cmd, "--help"])
        assert info.value.code == 0
        assert "usage: bench" in capsys.readouterr().out


@pytest.mark.slow
def test_run_probe_and_leaderboard(tmp_path, cli_args, capsys):
    results = tmp_path / "results"
    for method, epochs in (("simclr", "1"), ("random", "0")):
        assert main(["run", "--method", method, "--epochs", epochs, "--results", str(results),
                     *cli_args(tmp_path)]) == 0
    records = load_records(results)
    assert {r.method for r in records} == {"simclr", "random"}
    bench_id = records[0].benchmark.id
    assert bench_id.startswith("custom-") and all(r.benchmark.id == bench_id for r in records)
    rec = next(r for r in records if r.method == "simclr")
    assert rec.status == "ok" and rec.images_seen == 16 * 4 and rec.epochs == 1  # 72 imgs -> 4 steps of 16
    assert rec.views_seen == 2 * 16 * 4  # SimCLR: two views of each
    assert set(rec.scores) == {f"{p}_top{k}" for p in ("knn", "linear", "attentive") for k in (1, 5)}
    assert rec.data.fingerprint and rec.config_hash and rec.env["torch"] and rec.selected["knn"]["k"] in (10, 20, 50, 100)
    capsys.readouterr()
    assert main(["leaderboard", bench_id, "--results", str(results), "--out", str(tmp_path / "lb"),
                 "--format", "md", "csv", "tex"]) == 0
    out = capsys.readouterr().out
    assert "simclr" in out and "random" in out
    assert {p.name for p in (tmp_path / "lb" / bench_id).iterdir()} == {"leaderboard.md", "leaderboard.csv",
                                                                       "leaderboard.tex"}


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_folder):
    from bench.benchmarks import adhoc_benchmark
    from bench.config import make_config
    from bench.runner import train_run

    bench = adhoc_benchmark(f"imagefolder:{tiny_folder}")
    cfg = make_config("simclr", epochs=1, batch_size=16, backbone_kwargs={"stem": "imagenet"})
    run_dir = train_run(cfg, bench, runs_dir=tmp_path / "runs", progress=False, cache_dir=tmp_path / "cache")
    (first,) = json.loads((run_dir / "run.json").read_text())["train"]["segments"]
    assert first["started_at"] <= first["ended_at"] and first["hardware"]["cpu_count"] and first["env"]["torch"]
    assert "git_sha" in first
    # pretend the run was planned for 2 epochs and got interrupted after the first
    info = json.loads((run_dir / "run.json").read_text())
    info["config"]["epochs"], info["status"] = 2, "running"
    (run_dir / "run.json").write_text(json.dumps(info))
    (run_dir / "encoder.pt").unlink()
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["ssl_bench"]["train_time_s"] = 1000.0  # as if the first process had trained for 1000 s
    assert (run_dir / "checkpoints" / "last.ckpt.sha256").read_text().endswith("  last.ckpt\n")  # sha256sum format
    torch.save(ckpt, ckpt_path)  # changed behind the harness's back: its sha256 no longer matches
    assert main(["train", "--resume", str(run_dir), "--data", f"imagefolder:{tiny_folder}", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")]) == 2  # checksum: edited after the save, nothing resumed
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    atomic_torch_save(ckpt, ckpt_path, checksum=True)  # saved as the harness saves, with its sha256
    orphans = [run_dir / "checkpoints" / ".last.ckpt.k1ll3d.tmp", run_dir / "checkpoints" / ".last.ckpt.sha256.x.tmp"]
    for orphan in orphans:  # what a kill during a save leaves behind
        orphan.write_bytes(b"half a checkpoint")
    assert main(["probe", str(run_dir), "--data", f"imagefolder:{tiny_folder}"]) == 2  # not trained yet
    assert main(["train", "--resume", str(run_dir), "--data", f"imagefolder:{tiny_folder}", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "trained" and info["train"]["epochs"] == 2
    assert not any(p.exists() for p in orphans)  # cleaned when the next trainer started
    assert (info["train"]["images_seen"], info["train"]["views_seen"]) == (2 * 16 * 4, 2 * 2 * 16 * 4)  # both epochs
    assert len(info["train"]["monitor_history"]) == 2
    assert info["train"]["train_time_s"] > 1000.0  # the earlier process's training time is added, not reset
    # each training session is kept (code, machine, versions), and the record carries them
    segments = info["train"]["segments"]
    assert len(segments) == 2 and segments[0] == first and segments[1]["started_at"] >= first["ended_at"]
    assert main(["probe", str(run_dir), "--data", f"imagefolder:{tiny_folder}", "--results", str(tmp_path / "res"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    (record,) = load_records(tmp_path / "res")
    assert record.training == segments


@pytest.mark.slow
def test_bench_train_resume_with_probe_loads_the_data_once_and_records(tmp_path, tiny_folder, monkeypatch):
    import bench as api
    from bench import runner
    from bench.benchmarks import adhoc_benchmark
    from bench.config import make_config

    bench = adhoc_benchmark(f"imagefolder:{tiny_folder}")
    cfg = make_config("simclr", epochs=1, batch_size=16, backbone_kwargs={"stem": "imagenet"})
    run_dir = runner.train_run(cfg, bench, runs_dir=tmp_path / "runs", progress=False, cache_dir=tmp_path / "cache")
    info = json.loads((run_dir / "run.json").read_text())
    info["config"]["epochs"], info["status"] = 2, "running"  # planned for 2 epochs, interrupted after 1
    (run_dir / "run.json").write_text(json.dumps(info))
    loads = []
    real = runner.load_benchmark_data
    monkeypatch.setattr(runner, "load_benchmark_data", lambda *a, **k: loads.append(1) or real(*a, **k))
    rec = api.train(benchmark=bench, resume=run_dir, results_dir=tmp_path / "results", progress=False,
                    cache_dir=tmp_path / "cache", log=None)
    assert len(loads) == 1 and rec.status == "ok" and rec.epochs == 2 and rec.run_id == info["run_id"]
    assert [r.run_id for r in load_records(tmp_path / "results")] == [info["run_id"]]


@pytest.mark.parametrize("argv,needle", [
    (["run", "--method", "simclrr"], "unknown method 'simclrr'"),
    (["run", "--method", "simclr", "--benchmark", "imagenette-v9"], "unknown benchmark"),
    (["run", "--method", "simclr", "--set", "epochz=3"], "unknown config key 'epochz' (did you mean 'epochs'?)"),
    (["run", "--method", "simclr", "--set", "batch_size=-1"], "batch_size"),
    (["run", "--method", "simclr", "--data", "imagefolder:/no/such/dir"], "does not exist"),
    (["leaderboard", "imagenette-mini-v1", "--results", "/no/such/results"], "no records"),
])
def test_bad_input_is_one_clear_line(argv, needle, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err and "Traceback" not in err


def _assert_same_encoder_as_an_uninterrupted_run(run_dir, epochs, tmp_path, cli_args):
    """The resumed run's encoder equals (allclose) the encoder of the same run trained straight through."""
    assert main(["train", "--method", "simclr", "--epochs", str(epochs), *cli_args(tmp_path / "straight")]) == 0
    (straight,) = (tmp_path / "straight" / "runs").glob("*/*/encoder.pt")
    resumed, uninterrupted = (torch.load(p, weights_only=True) for p in (run_dir / "encoder.pt", straight))
    for name, value in uninterrupted.items():
        if value.is_floating_point():
            assert torch.allclose(resumed[name], value, atol=1e-5, rtol=1e-4), name


@pytest.mark.slow
def test_training_killed_mid_run_resumes_from_its_last_epoch(tmp_path, tiny_folder, cli_args):
    """SIGKILL after a checkpoint is on disk; `bench train --resume` finishes the planned epochs and ends
    with the same weights as a run that was never interrupted (data order and augmentation replay)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    epochs = 5
    argv = [sys.executable, "-m", "bench.cli", "train", "--method", "simclr", "--epochs", str(epochs),
            *cli_args(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, ckpt = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").glob("*/*/checkpoints/last.ckpt"))
        if found and torch.load(found[0], map_location="cpu", weights_only=False)["epoch"] >= 1:
            ckpt = found[0]
            break
        time.sleep(0.2)
    assert ckpt is not None and proc.poll() is None, "no per-epoch checkpoint before the run ended"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = ckpt.parent.parent
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    torch.load(ckpt, map_location="cpu", weights_only=False)  # the checkpoint survived the kill intact
    assert main(["train", "--resume", str(run_dir), "--data", f"imagefolder:{tiny_folder}", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "trained" and info["train"]["epochs"] == epochs
    assert info["train"]["views_seen"] == epochs * 2 * 16 * 4
    assert len(info["train"]["monitor_history"]) == epochs
    _assert_same_encoder_as_an_uninterrupted_run(run_dir, epochs, tmp_path, cli_args)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_a_checkpoint_and_resume_matches(tmp_path, tiny_folder, cli_args, monkeypatch, capsys):
    """SIGTERM (SLURM preemption) in the middle of an epoch: the run saves last.ckpt at that step, exits 143
    with a one-line message, and `--resume` skips the batches already trained on and replays the rest, ending
    with the weights of an uninterrupted run."""
    import os
    import signal

    from bench.trainer import SSLModule

    epochs, stop_at = 2, 6  # 4 steps per epoch: step 6 is in the middle of epoch 1
    original = SSLModule.on_train_batch_end

    def sigterm_at_step(self, outputs, batch, batch_idx):
        original(self, outputs, batch, batch_idx)
        if self.global_step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(SSLModule, "on_train_batch_end", sigterm_at_step)
    argv = ["train", "--method", "simclr", "--epochs", str(epochs), *cli_args(tmp_path)]
    assert main(argv) == 143
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: stopped by SIGTERM at step 6") and "bench train --resume" in err and "\n" not in err
    (ckpt,) = (tmp_path / "runs").glob("*/*/checkpoints/last.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 6)
    monkeypatch.setattr(SSLModule, "on_train_batch_end", original)
    run_dir = ckpt.parent.parent
    assert main(["train", "--resume", str(run_dir), "--data", f"imagefolder:{tiny_folder}", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "trained" and info["train"]["views_seen"] == epochs * 2 * 16 * 4
    _assert_same_encoder_as_an_uninterrupted_run(run_dir, epochs, tmp_path, cli_args)
