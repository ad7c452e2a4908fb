"""Run folders: one trainer per run (a lock the kernel drops when its process dies), and `bench runs`' view of
where every run stands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from bench import reference
from bench.benchmarks import adhoc_benchmark
from bench.cli import main
from bench.errors import BenchError
from bench.reference import Setup, missing_runs, run_missing
from bench.runner import train_run
from bench.runs import list_runs, lock_holder, run_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

TINY = {"epochs": 1, "batch_size": 16, "backbone_kwargs": {"stem": "imagenet"}}


def test_a_held_run_lock_refuses_a_second_trainer_and_is_free_after(tmp_path):
    run = tmp_path / "run"
    with run_lock(run):
        assert lock_holder(run) == str(os.getpid())
        with pytest.raises(BenchError, match=rf"being trained by another process \(pid {os.getpid()}\)"):
            with run_lock(run):
                pass
    assert lock_holder(run) is None
    with run_lock(run):  # free again
        pass


def test_the_lock_of_a_killed_trainer_is_released(tmp_path):
    run = tmp_path / "run"
    code = f"from bench.runs import run_lock\nwith run_lock({str(run)!r}):\n    print('held', flush=True)\n" \
           "    import time; time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert lock_holder(run) == str(proc.pid)
        with pytest.raises(BenchError, match=f"pid {proc.pid}"):
            with run_lock(run):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel must drop the lock
        proc.wait()
    assert lock_holder(run) is None


def _fake_run(root, name, status="running", epochs=4, seed=0, **files):
    run = root / "imagenette64-v1" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": name, "recipe": "simclr", "status": status,
                                             "config": {"epochs": epochs, "seed": seed},
                                             "train": {"epochs": epochs if status == "trained" else 0}}))
    for rel, text in files.items():
        (run / rel.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (run / rel.replace("__", "/")).write_text(text)
    return run


def test_list_runs_tells_recorded_trained_training_interrupted_and_empty_runs(tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    _fake_run(runs, "a-recorded", status="trained", **{"encoder.pt": "x"})
    (results / "imagenette64-v1").mkdir(parents=True)
    (results / "imagenette64-v1" / "a-recorded.json").write_text(json.dumps({"status": "collapsed"}))
    _fake_run(runs, "b-trained", status="trained", **{"encoder.pt": "x"})
    _fake_run(runs, "c-interrupted", **{"checkpoints__last.ckpt": "x",
                                        "logs__metrics.csv": "epoch,step,train/loss\n0,9,1.0\n2,57,0.5\n"})
    training = _fake_run(runs, "d-training", **{"checkpoints__last.ckpt": "x", "logs__metrics.csv": "epoch,step\n1,30\n"})
    _fake_run(runs, "e-empty")
    with run_lock(training):
        states = {r.run_id: r for r in list_runs(runs, results)}
        assert {k: v.state for k, v in states.items()} == {
            "a-recorded": "recorded", "b-trained": "trained", "c-interrupted": "interrupted",
            "d-training": "training", "e-empty": "empty"}
        assert states["a-recorded"].detail.startswith("collapsed: ")
        assert states["b-trained"].detail == f"bench probe {runs}/imagenette64-v1/b-trained --benchmark imagenette64-v1"
        assert states["c-interrupted"].progress == "2/4 ep, step 57"
        assert states["c-interrupted"].detail == f"bench train --resume {runs}/imagenette64-v1/c-interrupted"
        assert states["d-training"].detail == f"pid {os.getpid()}" and states["d-training"].progress == "1/4 ep, step 30"
        assert main(["runs", "--runs-dir", str(runs), "--results", str(results), "--state", "interrupted", "trained"]) == 0
    out = capsys.readouterr().out
    assert "c-interrupted" in out and "b-trained" in out and "a-recorded" not in out and "d-training" not in out
    assert f"bench train --resume {runs}/imagenette64-v1/c-interrupted" in out
    assert list_runs(runs, results, "imagenette64-v1")[3].state == "interrupted"  # lock released
    assert list_runs(tmp_path / "nowhere", results) == []


def test_progress_counts_the_epochs_done_from_lightnings_zero_based_log(tmp_path):
    """Lightning's CSV log numbers epochs from 0: its row that closes epoch 1 (``*_epoch`` metrics) means 2 done;
    a step row of epoch 2 means the third is under way (still 2 done)."""
    header = "epoch,online/acc_epoch,online/acc_step,step,train/loss_epoch,train/loss_step\n"
    closed = header + "0,,93.7,2,,3.73\n0,54.1,,2,3.51,\n1,,81.2,5,,3.25\n1,79.1,,5,3.30,\n"
    _fake_run(tmp_path / "runs", "after-2", epochs=3, **{"checkpoints__last.ckpt": "x", "logs__metrics.csv": closed})
    _fake_run(tmp_path / "runs", "in-3rd", epochs=3, **{"checkpoints__last.ckpt": "x",
                                                        "logs__metrics.csv": closed + "2,,70.0,7,,3.1\n"})
    states = {r.run_id: r for r in list_runs(tmp_path / "runs", tmp_path / "results")}
    assert states["after-2"].progress == "2/3 ep, step 5"
    assert states["in-3rd"].progress == "2/3 ep, step 7"


@pytest.mark.slow
def test_training_holds_the_lock_and_reference_skips_a_run_another_process_trains(tmp_path, tiny_folder, monkeypatch):
    import bench.runner as runner
    bench = adhoc_benchmark(f"imagefolder:{tiny_folder}")
    setup = Setup("simclr", overrides=TINY)
    monkeypatch.setitem(reference.REFERENCE, bench.id, [setup])
    kw = dict(runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    seen = {}
    real = runner._fit_and_save

    def spy(method, cfg, info, run_dir, *a):
        seen["holder"] = lock_holder(run_dir)
        return real(method, cfg, info, run_dir, *a)
    monkeypatch.setattr(runner, "_fit_and_save", spy)
    run = train_run(setup.config(bench, 0), bench, recipe="simclr", **kw)
    assert seen["holder"] == str(os.getpid()) and lock_holder(run) is None
    # the trained run is picked up by `bench reference` - unless another process is training it right now
    log = []
    with run_lock(run):
        done = run_missing(bench, missing_runs(bench, [0], tmp_path / "results"), results_dir=tmp_path / "results",
                           log=log.append, **kw)
    assert done == (0, []) and "skipped" in log[0] and f"pid {os.getpid()}" in log[0]
    assert not (tmp_path / "results").exists()


def test_resume_of_a_locked_interrupted_run_is_refused_before_training(tmp_path, tiny_folder):
    from bench.config import make_config
    bench = adhoc_benchmark(f"imagefolder:{tiny_folder}")
    run = _fake_run(tmp_path / "runs", "x-interrupted")
    (run / "run.json").write_text(json.dumps({"run_id": "x-interrupted", "recipe": "simclr", "status": "running",
                                             "config": make_config("simclr", **TINY).model_dump(mode="json"),
                                             "benchmark": bench.id, "train": {}}))
    torch.save({"state_dict": {}}, run / "checkpoints" / "last.ckpt")
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    with run_lock(run):
        with pytest.raises(BenchError, match=f"{run} is being trained by another process"):
            train_run(None, bench, resume=run, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before
