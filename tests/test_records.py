"""Run records: schema checks, JSON round trip, atomic no-overwrite writes, one-line load errors."""

import json

import pytest

from bench.errors import BenchError
from bench.records import (BenchmarkRef, DataRef, RunRecord, collect_env, collect_hardware, config_hash, git_sha,
                           load_record, load_records, new_run_id, write_record)


def make_record(**kw) -> RunRecord:
    config = {"method": "simclr", "seed": 0, "lr": 0.3}
    base = dict(run_id=new_run_id("simclr", 0), status="ok", method="simclr", backbone="resnet18", recipe="simclr",
                benchmark=BenchmarkRef(name="imagenette-mini", version=1, spec_hash="abc"),
                data=DataRef(spec="imagenette-mini", fingerprint="f" * 64), seed=0, config=config,
                config_hash=config_hash(config), git_sha="deadbeef", env={"python": "3.11"}, hardware={"cpu_count": 2},
                wall_time_s=12.5, images_seen=1000, scores={"linear_top1": 71.25, "knn_top1": 60.0},
                selected={"linear": {"lr": 0.1, "wd": 0.0}, "knn": {"k": 20, "t": 0.07}}, created_at="2025-01-01T00:00:00+00:00")
    base.update(kw)
    return RunRecord(**base)


def test_round_trip_and_layout(tmp_path):
    rec = make_record(holdout={"linear_top1": 70.0}, monitors={"rank": 12.5})
    path = write_record(rec, tmp_path)
    assert path == tmp_path / "imagenette-mini-v1" / f"{rec.run_id}.json"
    assert load_record(path) == rec
    assert load_records(tmp_path) == [rec] == load_records(tmp_path, "imagenette-mini-v1")
    assert load_records(tmp_path, "imagenette-mini-v2") == [] and load_records(tmp_path / "absent") == []


def test_write_is_atomic_and_refuses_overwrite(tmp_path):
    rec = make_record()
    path = write_record(rec, tmp_path)
    before = path.read_text()
    with pytest.raises(BenchError, match="already exists"):
        write_record(make_record(run_id=rec.run_id, scores={"linear_top1": 1.0}), tmp_path)
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


@pytest.mark.parametrize("kw, msg", [
    ({"scores": {"linear_top1": 101.0}}, "percentage"),
    ({"scores": {"linear_top1": -1.0}}, "percentage"),
    ({"scores": {"linear_top1": float("nan")}}, "percentage"),
    ({"scores": {}}, "at least one score"),
    ({"status": "failed", "scores": {}}, "error message"),
    ({"status": "finished"}, "status"),
    ({"extra_field": 1}, "extra"),
    ({"run_id": "../escape"}, "run_id"),
    ({"benchmark": {"name": "../escape", "version": 1}}, "benchmark.name"),  # names the records' folder
    ({"wall_time_s": float("inf")}, "wall_time_s"),
    ({"wall_time_s": float("nan")}, "wall_time_s"),
    ({"train_time_s": -1.0}, "train_time_s"),
    ({"images_seen": -5}, "images_seen"),
    ({"views_seen": -1}, "views_seen"),
    ({"params": -1}, "params"),
    ({"epochs": -2}, "epochs"),
    ({"seed": -1}, "seed"),
])
def test_schema_rejects(kw, msg):
    with pytest.raises(ValueError, match=msg):
        make_record(**kw)


def test_failed_and_collapsed_records_are_valid():
    assert make_record(status="failed", scores={}, error="NaN loss at step 3").error
    assert make_record(status="collapsed", scores={}).status == "collapsed"


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "imagenette-mini-v1" / "bad.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(BenchError, match=r"bad\.json is not valid JSON") as e:
        load_record(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(BenchError, match="bad.json"):
        load_records(tmp_path)
    data = make_record().model_dump(mode="json")
    data["scores"] = {"linear_top1": 200}
    bad.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=r"bad\.json does not match the schema: scores"):
        load_record(bad)


def test_helpers(tmp_path):
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1}) != config_hash({"a": 2, "b": [1, 2]})
    assert len(config_hash({})) == 16
    a, b = new_run_id("my/method:Cls", 3), new_run_id("my/method:Cls", 3)
    assert a != b and "/" not in a and ":" not in a and "-s3-" in a
    env = collect_env()
    assert {"python", "torch", "torchvision", "timm", "lightning", "faiss", "numpy", "platform"} <= env.keys()
    assert env["python"] and env["numpy"]
    hw = collect_hardware()
    assert hw["cpu_count"] >= 1 and "gpu" in hw
    assert git_sha(tmp_path) is None  # not a repository


def test_git_sha_outside_git_comes_from_bench_git_sha(tmp_path, monkeypatch):
    """A copy of the tree without .git (a rented GPU machine) records the sha the copy was made from."""
    monkeypatch.setenv("BENCH_GIT_SHA", "0123abc-dirty")
    assert git_sha(tmp_path) == "0123abc-dirty"
    monkeypatch.setenv("BENCH_GIT_SHA", "")
    assert git_sha(tmp_path) is None


def test_git_sha_marks_dirty(tmp_path):
    import subprocess
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    try:
        run("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not available")
    (tmp_path / "f.txt").write_text("x")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    sha = git_sha(tmp_path)
    assert sha and len(sha) == 40
    (tmp_path / "f.txt").write_text("y")
    assert git_sha(tmp_path) == sha + "-dirty"


def _write_many(results_dir, worker, n, shared_id):
    """One concurrent writer: n records of its own, one contested run id, and a leaderboard rebuild each time."""
    from bench.benchmarks import get_benchmark
    from bench.leaderboard import write_leaderboard
    b = get_benchmark("imagenette-mini-v1")  # records the leaderboard accepts: this spec, this data
    own = dict(benchmark=BenchmarkRef(name=b.name, version=b.version, spec_hash=b.spec_hash()),
               data=DataRef(spec=b.data, fingerprint=b.data_fingerprint))
    won = 0
    for i in range(n):
        write_record(make_record(run_id=new_run_id(f"w{worker}", i), seed=i, **own), results_dir)
        write_leaderboard("imagenette-mini-v1", results_dir, results_dir.parent / "lb", ("md", "csv"))
    try:
        write_record(make_record(run_id=shared_id, seed=worker, **own), results_dir)
        won = 1
    except BenchError:
        pass
    return won


def test_concurrent_writers_do_not_clobber_each_other(tmp_path):
    import concurrent.futures
    import multiprocessing

    results, shared = tmp_path / "results", new_run_id("contested", 0)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        won = list(pool.map(_write_many, [results] * 2, [0, 1], [10, 10], [shared] * 2))
    records = load_records(results, "imagenette-mini-v1")
    assert len(records) == 21 and sum(won) == 1  # every record kept; the contested id written exactly once
    assert not [p for p in (results / "imagenette-mini-v1").iterdir() if p.suffix != ".json"]  # no temp files
    md = (tmp_path / "lb" / "imagenette-mini-v1" / "leaderboard.md").read_text()
    assert md.startswith("## imagenette-mini-v1")  # whole, not torn


def test_schema1_records_counted_views_as_images_seen(tmp_path):
    """Schema 1 stored the augmented views in images_seen (SimCLR: 2 per image, DINO: 2 + local crops); read back,
    images_seen counts training samples and views_seen the views; new records store both."""
    old = make_record().model_dump(mode="json")
    old.update(schema_version=1, images_seen=317440)
    old.pop("views_seen")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    r = load_record(path)
    assert (r.images_seen, r.views_seen) == (158720, 317440)
    dino = {**old, "method": "dino", "images_seen": 224000,
            "config": {"method": "dino", "method_kwargs": {"local_crops": 2}}}
    assert RunRecord.model_validate(dino).images_seen == 56000
    assert RunRecord.model_validate({**old, "method": "my-plugin"}).images_seen is None  # unknown: not invented
    new = make_record(images_seen=1000, views_seen=2000)
    assert new.schema_version == 2 and RunRecord.model_validate(new.model_dump(mode="json")) == new
