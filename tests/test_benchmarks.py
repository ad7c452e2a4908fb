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
