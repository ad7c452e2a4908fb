"""`bench reference`: which reference runs lack a record, and producing them idempotently - an interrupted
run is continued (here: only probed, its encoder being saved), never restarted."""

from __future__ import annotations

import pytest

from bench import reference
from bench.benchmarks import adhoc_benchmark, get_benchmark
from bench.cli import main
from bench.errors import ConfigError
from bench.records import load_records
from bench.reference import Setup, missing_runs, run_missing
from bench.runner import train_run

TINY = {"epochs": 1, "batch_size": 16, "backbone_kwargs": {"stem": "imagenet"}}


@pytest.fixture
def tiny_reference(tiny_folder, monkeypatch):
    bench = adhoc_benchmark(f"imagefolder:{tiny_folder}")
    setups = [Setup("random", overrides={"backbone_kwargs": {"stem": "imagenet"}}), Setup("simclr", overrides=TINY)]
    monkeypatch.setitem(reference.REFERENCE, bench.id, setups)
    return bench, setups


@pytest.mark.slow
def test_reference_runs_are_produced_once_and_an_interrupted_run_is_continued(tmp_path, tiny_reference):
    bench, (random, simclr) = tiny_reference
    kw = dict(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    assert [(s.label, seed) for s, seed, _ in missing_runs(bench, [0], kw["results_dir"])] == [("random", 0), ("simclr", 0)]
    # simclr seed 0 was trained, but the process died before probing
    trained = train_run(simclr.config(bench, 0), bench, runs_dir=kw["runs_dir"], recipe="simclr", progress=False,
                        cache_dir=kw["cache_dir"])
    log = []
    assert run_missing(bench, missing_runs(bench, [0], kw["results_dir"]), log=log.append, **kw) == (2, [])
    assert log[0].endswith("random seed 0: new run") and log[1].endswith(f"simclr seed 0: continuing {trained}")
    records = load_records(kw["results_dir"], bench.id)
    assert sorted((r.recipe, r.seed) for r in records) == [("random", 0), ("simclr", 0)]
    assert next(r for r in records if r.recipe == "simclr").run_id == trained.name  # probed, not retrained
    assert missing_runs(bench, [0], kw["results_dir"]) == []
    todo = missing_runs(bench, [0], kw["results_dir"])
    assert run_missing(bench, todo, log=log.append, **kw) == (0, []) and len(log) == 2  # nothing left to do
    # another seed, or the same recipe with another config, is still missing
    assert [(s.label, seed) for s, seed, _ in missing_runs(bench, [0, 1], kw["results_dir"])] == [("random", 1), ("simclr", 1)]
    reference.REFERENCE[bench.id] = [Setup("simclr", overrides={**TINY, "lr": 0.1})]
    assert len(missing_runs(bench, [0], kw["results_dir"])) == 1


@pytest.mark.slow
def test_a_failing_reference_run_does_not_stop_the_others(tmp_path, tiny_reference, monkeypatch):
    import bench.runner as runner
    from bench.errors import TrainingError
    bench, _ = tiny_reference
    real = runner.run_benchmark

    def nan_for_random(cfg, *a, **k):
        if cfg.method == "random":
            raise TrainingError("loss is nan at step 3")
        return real(cfg, *a, **k)
    monkeypatch.setattr(runner, "run_benchmark", nan_for_random)
    log = []
    done, failed = run_missing(bench, missing_runs(bench, [0], tmp_path / "results"), results_dir=tmp_path / "results",
                               runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False, log=log.append)
    assert (done, failed) == (1, ["random seed 0"]) and "random seed 0 failed: loss is nan at step 3" in log[1]
    assert [r.recipe for r in load_records(tmp_path / "results", bench.id)] == ["simclr"]


def test_reference_dry_run_lists_the_missing_runs_of_the_committed_results(capsys):
    """Every imagenette64-v1 reference setup builds its config; the committed seed-0 records count as done."""
    assert main(["reference", "imagenette64-v1", "--seeds", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    missing = {line.split("missing: ")[1] for line in out.splitlines() if line.startswith("missing: ")}
    assert "simclr seed 0" not in missing and "random_vit seed 0" not in missing and "ijepa seed 0" not in missing
    assert missing <= {f"{s.label} seed 0" for s in reference.REFERENCE["imagenette64-v1"]}


def test_only_picks_and_orders_setups_and_names_unknown_ones(capsys):
    argv = ["reference", "imagenette64-v1", "--first-seed", "7", "--seeds", "1", "--only", "random_vit,simclr"]
    assert main([*argv, "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("missing: ")]
    assert lines == ["missing: random_vit seed 7", "missing: simclr seed 7"]  # only these two, in the order asked
    assert main(["reference", "imagenette64-v1", "--only", "simclrr", "--dry-run"]) == 2
    assert "no reference setup 'simclrr'" in capsys.readouterr().err


def test_a_benchmark_without_reference_setups_is_a_clear_error():
    with pytest.raises(ConfigError, match="no reference setups for .imagewoof-v1"):
        missing_runs(get_benchmark("imagewoof-v1"), [0])


@pytest.mark.slow
def test_bench_reference_records_and_writes_the_leaderboard(tmp_path, monkeypatch):
    """The CLI end to end on the embedded imagenette-mini-v1 with one cheap setup (a random-init encoder)."""
    monkeypatch.setitem(reference.REFERENCE, "imagenette-mini-v1",
                        [Setup("random", overrides={"backbone_kwargs": {"stem": "imagenet"}})])
    dirs = ["--results", str(tmp_path / "results"), "--leaderboards", str(tmp_path / "lb"),
            "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(["reference", "imagenette-mini-v1", "--seeds", "1", *dirs]) == 0
    assert len(load_records(tmp_path / "results", "imagenette-mini-v1")) == 1
    md = (tmp_path / "lb" / "imagenette-mini-v1" / "leaderboard.md").read_text()
    assert "| random | resnet18 | random |" in md
    assert {p.suffix for p in (tmp_path / "lb" / "imagenette-mini-v1").iterdir()} >= {".md", ".csv", ".tex", ".html"}
    assert main(["reference", "imagenette-mini-v1", "--seeds", "1", *dirs]) == 0  # nothing missing: no new record
    assert len(load_records(tmp_path / "results", "imagenette-mini-v1")) == 1
