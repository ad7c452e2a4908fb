"""Kendall tau of the label-free estimators against the headline: hand-counted pairs, scipy and the fallback agree,
and the leaderboard's md / html outputs gain the section (only where records carry estimators)."""

from __future__ import annotations

import math
import sys

import pytest

from bench.benchmarks import get_benchmark
from bench.leaderboard import build_leaderboard, render_leaderboard
from bench.rank_agreement import estimator_agreement, kendall_tau, kendall_tau_b
from bench.records import BenchmarkRef, DataRef, RunRecord, config_hash, new_run_id

BID = "imagenette-mini-v1"


def registered_rec(method, seed, top1, **kw):
    b = get_benchmark(BID)
    config = {"method": method, "seed": seed}
    return RunRecord(run_id=new_run_id(method, seed), status="ok", method=method, backbone="resnet18", recipe=method,
                     benchmark=BenchmarkRef(name=b.name, version=b.version, spec_hash=b.spec_hash()),
                     data=DataRef(spec=b.data, fingerprint=b.data_fingerprint), seed=seed, config=config,
                     config_hash=config_hash(config), git_sha=None, env={}, hardware={}, wall_time_s=1.0,
                     images_seen=0, scores={"linear_top1": top1}, selected={},
                     created_at="2025-01-01T00:00:00+00:00", **kw)


def test_kendall_tau_b_by_hand():
    # 6 pairs: only (2, 3) is discordant -> (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # one pair tied in x only: P = 5, Q = 0, T_x = 1 -> 5 / sqrt(6 * 5)
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))


def test_scipy_and_the_fallback_agree(monkeypatch):
    x, y = [0.3, 1.2, 0.7, 2.0, 1.9], [10.0, 30.0, 20.0, 35.0, 50.0]
    pytest.importorskip("scipy")
    tau, p = kendall_tau(x, y)
    assert tau == pytest.approx(kendall_tau_b(x, y)) and 0 < p < 1
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # as if scipy were not installed
    assert kendall_tau(x, y) == (pytest.approx(kendall_tau_b(x, y)), None)
    assert math.isnan(kendall_tau([1.0], [2.0])[0])


def with_estimators(method, seed, top1, **est):
    return registered_rec(method, seed, top1, estimators=est, estimators_setup={"split": "train"})


def test_leaderboard_reports_each_estimators_tau_over_its_rows():
    records = [with_estimators("simclr", 0, 70.0, rankme=100.0, alpha_req=1.2),
               with_estimators("simclr", 1, 72.0, rankme=120.0, alpha_req=1.0),  # row mean: 110, 1.1
               with_estimators("barlow", 0, 60.0, rankme=90.0, alpha_req=1.5),
               with_estimators("random", 0, 20.0, rankme=40.0, alpha_req=3.0),
               registered_rec("vicreg", 0, 50.0)]                                # an old record: no estimators
    df = build_leaderboard(records, BID)
    taus = {t["estimator"]: t for t in df.attrs["estimator_tau"]}
    assert list(taus) == ["rankme", "alpha_req"]
    assert taus["rankme"]["n"] == 3 and taus["rankme"]["tau"] == pytest.approx(1.0)
    assert taus["alpha_req"]["tau"] == pytest.approx(-1.0)
    assert estimator_agreement(df, records, "linear_top1") == df.attrs["estimator_tau"]
    md = render_leaderboard(df, "md")
    assert "Label-free estimators vs linear_top1" in md and "- rankme: tau +1.00 (n=3" in md
    assert "- alpha_req: tau -1.00 (n=3" in md
    html = render_leaderboard(df, "html", records=records)
    assert "<h2>Label-free estimators vs linear_top1</h2>" in html and "<code>rankme</code>: tau +1.00 (n=3" in html


def test_no_section_without_estimators():
    df = build_leaderboard([registered_rec("simclr", 0, 70.0), registered_rec("barlow", 0, 60.0)], BID)
    assert df.attrs["estimator_tau"] == []
    assert "Label-free" not in render_leaderboard(df, "md")
