"""Benchmark specs: versioned ids, lookup with did-you-mean, protocol hash."""

import pytest
from pydantic import ValidationError

from bench.benchmarks import BENCHMARKS, Benchmark, available_benchmarks, get_benchmark
from bench.errors import ConfigError


def test_registry_and_ids():
    assert {"imagenette-mini-v1", "imagenette64-v1"} <= set(BENCHMARKS)
    assert all(bid == b.id for bid, b in BENCHMARKS.items())
    assert [b.id for b in available_benchmarks()] == sorted(BENCHMARKS)
    mini = get_benchmark("imagenette-mini-v1")
    assert (mini.data, mini.img_size, mini.headline) == ("imagenette-mini", 32, "linear_top1")
    big = get_benchmark("imagenette64-v1")
    assert (big.data, big.img_size, big.crop_pct) == ("imagenette64", 32, 1.0)


def test_bare_name_gives_latest_version(monkeypatch):
    v2 = get_benchmark("imagenette-mini").model_copy(update={"version": 2})
    monkeypatch.setitem(BENCHMARKS, v2.id, v2)
    assert get_benchmark("imagenette-mini") is v2
    assert get_benchmark("imagenette-mini-v1").version == 1


def test_unknown_benchmark_suggests():
    with pytest.raises(ConfigError, match=r"unknown benchmark 'imagenete-mini-v1' \(did you mean 'imagenette-mini-v1'\?\)"
                       r"; known: .*imagenette64-v1") as e:
        get_benchmark("imagenete-mini-v1")
    assert "\n" not in str(e.value)


def test_frozen_and_strict():
    b = get_benchmark("imagenette-mini-v1")
    with pytest.raises(ValidationError):
        b.img_size = 64
    with pytest.raises(ValidationError):
        Benchmark(name="x", version=1, description="", data="d", typo=1)


def test_spec_hash_tracks_protocol_only():
    b = get_benchmark("imagenette-mini-v1")
    h = b.spec_hash()
    assert len(h) == 16 and h == Benchmark(**b.model_dump()).spec_hash()
    assert b.model_copy(update={"description": "reworded"}).spec_hash() == h
    assert b.model_copy(update={"superseded_by": "imagenette-mini-v2"}).spec_hash() == h
    for change in [{"img_size": 64}, {"knn_k": (20,)}, {"linear_lr": (0.1,)}, {"version": 2}, {"data": "other"},
                   {"holdout_frac": 0.2}, {"headline": "knn_top1"}]:
        assert b.model_copy(update=change).spec_hash() != h, change
    assert get_benchmark("imagenette64-v1").spec_hash() != h


def _record(bench: Benchmark, fingerprint: str, spec_hash: str | None = None):
    from bench.records import BenchmarkRef, DataRef, RunRecord, config_hash
    config = {"method": "simclr", "seed": 0}
    return RunRecord(run_id="r1", status="ok", method="simclr", backbone="resnet18",
                     benchmark=BenchmarkRef(name=bench.name, version=bench.version,
                                            spec_hash=spec_hash or bench.spec_hash()),
                     data=DataRef(spec=bench.data, fingerprint=fingerprint), seed=0, config=config,
                     config_hash=config_hash(config), git_sha=None, env={}, hardware={}, wall_time_s=1.0,
                     images_seen=0, scores={"linear_top1": 50.0}, selected={}, created_at="2025-01-01T00:00:00+00:00")


def test_changed_protocol_is_refused_and_a_new_version_keeps_records_apart(tmp_path):
    from bench.benchmarks import check_records
    from bench.records import load_records, write_record
    v1 = get_benchmark("imagenette64-v1")
    ok = _record(v1, v1.data_fingerprint)
    check_records(v1, [ok])  # made with this exact spec and data: accepted
    edited = v1.model_copy(update={"knn_k": (5,)})  # the protocol changed under the same id
    with pytest.raises(ConfigError, match="another imagenette64-v1 protocol.*needs a new version"):
        check_records(edited, [ok])
    v2 = edited.model_copy(update={"version": 2})  # the right way: a new version, whose records are separate
    write_record(ok, tmp_path)
    assert load_records(tmp_path, v2.id) == [] and len(load_records(tmp_path, v1.id)) == 1


def test_mismatched_data_fingerprint_is_refused():
    from bench.benchmarks import check_records
    from bench.errors import DataError
    from bench.runner import load_benchmark_data
    v1 = get_benchmark("imagenette64-v1")
    with pytest.raises(ConfigError, match="made on other data than imagenette64-v1"):
        check_records(v1, [_record(v1, "0" * 64)])
    pinned_wrong = get_benchmark("imagenette-mini-v1").model_copy(update={"data_fingerprint": "0" * 64})
    with pytest.raises(DataError, match="not the data the benchmark was defined on"):
        load_benchmark_data(pinned_wrong)
    mini = get_benchmark("imagenette-mini-v1")
    assert load_benchmark_data(mini).fingerprint == mini.data_fingerprint  # the embedded data is pinned too


def test_leaderboard_refuses_a_record_of_another_protocol_and_writes_nothing(tmp_path):
    from bench.leaderboard import write_leaderboard
    from bench.records import write_record
    v1 = get_benchmark("imagenette64-v1")
    write_record(_record(v1, v1.data_fingerprint, spec_hash="f" * 16), tmp_path / "results")
    with pytest.raises(ConfigError, match="another imagenette64-v1 protocol"):
        write_leaderboard(v1, tmp_path / "results", tmp_path / "lb")
    with pytest.raises(ConfigError, match="another imagenette64-v1 protocol"):
        write_leaderboard("imagenette64-v1", tmp_path / "results", tmp_path / "lb")  # a registered id is looked up
    assert not (tmp_path / "lb").exists()


def test_a_folder_given_relative_or_absolute_is_one_adhoc_benchmark(tmp_path, monkeypatch):
    from bench.benchmarks import adhoc_benchmark
    (tmp_path / "data" / "my-set").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "data" / "my-set")
    monkeypatch.chdir(tmp_path / "data")
    specs = ["imagefolder:my-set", "imagefolder:./my-set/", f"imagefolder:{tmp_path}/data/my-set",
             f"imagefolder:{tmp_path}/data/../data/my-set", "imagefolder:../link"]
    benches = [adhoc_benchmark(s) for s in specs]
    assert {b.id for b in benches} == {"custom-my-set-v1"}
    assert {b.spec_hash() for b in benches} == {benches[0].spec_hash()}  # one leaderboard, no spec-hash mismatch
    assert {b.data for b in benches} == {f"imagefolder:{(tmp_path / 'data' / 'my-set').resolve()}"}
    assert adhoc_benchmark("hf:./my-set?size=8").data == f"hf:{(tmp_path / 'data' / 'my-set').resolve()}?size=8"
    assert adhoc_benchmark("hf:cifar10").data == "hf:cifar10"  # a dataset name is no path
