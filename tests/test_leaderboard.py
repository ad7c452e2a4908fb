"""Leaderboards: mean ± std over seeds, one benchmark version only, failed runs out, renderers."""

import io
import math

import pandas as pd
import pytest

from bench.errors import BenchError, ConfigError
from bench.leaderboard import build_leaderboard, render_leaderboard, write_leaderboard
from bench.records import BenchmarkRef, DataRef, RunRecord, config_hash, new_run_id, write_record

BID = "imagenette-mini-v1"


def rec(method, seed, top1, *, version=1, spec_hash="abc", status="ok", lr=0.3, **kw):
    config = {"method": method, "seed": seed, "lr": lr}
    base = dict(run_id=new_run_id(method, seed), status=status, method=method, backbone="resnet18", recipe=method,
                benchmark=BenchmarkRef(name="imagenette-mini", version=version, spec_hash=spec_hash),
                data=DataRef(spec="imagenette-mini", fingerprint="f"), seed=seed, config=config,
                config_hash=config_hash(config), git_sha=None, env={}, hardware={}, wall_time_s=1.0,
                images_seen=0, scores={"linear_top1": top1, "knn_top1": top1 - 10} if top1 is not None else {},
                selected={}, created_at="2025-01-01T00:00:00+00:00")
    return RunRecord(**{**base, **kw})


@pytest.fixture
def records():
    return [rec("simclr", s, v, wall_time_s=10.0 * (s + 1), images_seen=1000) for s, v in enumerate([70, 72, 74])] + [
        rec("barlow", 0, 75.0, status="collapsed"),
        rec("barlow", 1, None, status="failed", error="NaN loss"),
        rec("simclr", 0, 99.0, version=2),  # another version: never mixed in
        rec("random", 0, 20.0),
    ]


def test_mean_std_n_rank(records):
    df = build_leaderboard(records, BID)
    assert list(df["method"]) == ["barlow", "simclr", "random"]
    assert list(df["rank"]) == [1, 2, 3]
    s = df.set_index("method").loc["simclr"]
    assert (s["linear_top1_mean"], s["linear_top1_std"], s["n"]) == (72.0, 2.0, 3)
    assert s["knn_top1_mean"] == 62.0 and s["wall_time_s"] == 20.0 and s["images_seen"] == 1000
    b = df.set_index("method").loc["barlow"]
    assert b["n"] == 1 and math.isnan(b["linear_top1_std"]) and b["status"] == "collapsed 1/1"
    assert df.set_index("method").loc["simclr", "status"] == "ok"


def test_different_configs_are_not_averaged():
    df = build_leaderboard([rec("simclr", 0, 70.0), rec("simclr", 1, 72.0), rec("simclr", 0, 50.0, lr=1.0)], BID)
    assert sorted(df["n"]) == [1, 2] and sorted(df["linear_top1_mean"]) == [50.0, 71.0]


def test_spec_hash_mismatch_raises():
    with pytest.raises(BenchError, match="different benchmark specs"):
        build_leaderboard([rec("simclr", 0, 70.0, spec_hash="a"), rec("simclr", 1, 70.0, spec_hash="b")], BID)
    assert len(build_leaderboard([rec("simclr", 0, 70.0, spec_hash="a"), rec("dino", 0, 70.0, version=2,
                                                                          spec_hash="b")], BID)) == 1


def test_render_md_csv_tex(records):
    df = build_leaderboard(records, BID)
    md = render_leaderboard(df, "md", title=BID)
    assert md.startswith(f"## {BID}") and "| 72.0 ± 2.0 |" in md and "(n=3)" in md and "collapsed 1/1" in md
    assert "| 75.0 |" in md  # n=1: no std
    back = pd.read_csv(io.StringIO(render_leaderboard(df, "csv")))
    row = back.set_index("method").loc["simclr"]
    assert (row["linear_top1_mean"], row["linear_top1_std"], row["n"]) == (72.0, 2.0, 3)
    tex = render_leaderboard(df, "tex", title=BID)
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"72.0 $\pm$ 2.0" in tex
    assert r"\textbf{75.0}" in tex and r"\textbf{72.0" not in tex
    assert r"linear\_top1" in tex and r"\textbf{65.0}" in tex  # best knn_top1 (75 - 10) bold too
    with pytest.raises(ConfigError, match="unknown leaderboard format 'html'"):
        render_leaderboard(df, "html")


def test_write_leaderboard(tmp_path, records):
    for r in records:
        write_record(r, tmp_path / "results")
    paths = write_leaderboard(BID, tmp_path / "results", tmp_path / "lb")
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv", "leaderboard.tex"]
    assert all(p.parent == tmp_path / "lb" / BID for p in paths)
    assert "72.0 ± 2.0" in paths[0].read_text() and "99.0" not in paths[0].read_text()
    assert sorted(p.name for p in (tmp_path / "lb" / BID).iterdir()) == sorted(p.name for p in paths)
    with pytest.raises(BenchError, match="no records for imagenette64-v1 in"):
        write_leaderboard("imagenette64-v1", tmp_path / "results", tmp_path / "lb")
