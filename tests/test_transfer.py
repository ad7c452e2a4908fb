"""Transfer suites: tv: specs read tiny fakes in torchvision's own layouts through the real torchvision classes; a
whole suite of them runs end to end (records, resumption after a kill between datasets, the aggregate table)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import transfer_fakes as fakes
from bench.benchmarks import BENCHMARKS, Benchmark, get_benchmark
from bench.benchmarks.suites import SUITES, Suite, get_suite
from bench.cli import main
from bench.data import load_split
from bench.data.torchvision_sets import TV_DATASETS, seeded_split
from bench.errors import DataError
from bench.records import load_records
from bench.suite_leaderboard import build_suite_leaderboard, suite_boards, write_suite_leaderboard
from bench.suite_runner import evaluate_suite
from probes.selection import holdout_split

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def tv_root(tmp_path_factory):
    return fakes.make_all(tmp_path_factory.mktemp("tv"))


@pytest.fixture
def tv(tv_root, monkeypatch):
    fakes.accept_fake_md5s(monkeypatch, tv_root)
    return tv_root


class ColourNet(nn.Module):
    """A fixed encoder: per-channel means and a seeded random conv's pooled responses (6-d)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        return torch.cat([x.mean((2, 3)), self.conv(x).mean((2, 3))], 1)


_TINY = dict(version=1, img_size=16, crop_pct=1.0, probes=("knn", "linear"), eval_split="test", knn_k=(3, 5),
             knn_t=(0.1,), linear_lr=(0.1, 1.0), linear_wd=(0.0,), linear_epochs=5, upsample=False)


@pytest.fixture
def tiny_suite(tv, monkeypatch):
    """A test-only suite of the five fakes at 16 px with tiny probe grids, registered like the real ones."""
    benches = [Benchmark(name=f"t-{name}", data=f"tv:{name}?size=16", train_split=split, description=name, **_TINY)
               for name, split in (("cifar10", "train"), ("cifar100", "train"), ("flowers102", "trainval"),
                                   ("dtd", "trainval"), ("eurosat", "train"))]
    for b in benches:
        monkeypatch.setitem(BENCHMARKS, b.id, b)
    suite = Suite(name="t-transfer", version=1, description="fakes", benchmarks=tuple(b.id for b in benches))
    monkeypatch.setitem(SUITES, suite.id, suite)
    return suite


def test_fakes_read_through_torchvision(tv, tmp_path):
    cache = tmp_path / "cache"
    c10 = load_split("tv:cifar10", "train", datasets_root=tv, cache_dir=cache)
    assert tuple(c10.images.shape) == (36, 3, 32, 32) and c10.classes == ["class_0", "class_1", "class_2"]
    assert c10.labels.bincount().tolist() == [12, 12, 12] and c10.holdout is None
    red = c10.images[c10.labels == 0].float().mean((0, 2, 3))  # class 0 is red: the pixels are the batch's
    assert red[0] > 150 and red[1] < 100
    assert len(load_split("tv:cifar100", "test", datasets_root=tv, cache_dir=cache)) == 12
    fl = load_split("tv:flowers102:" + str(tv), "trainval", cache_dir=cache)  # ROOT in the spec itself
    assert tuple(fl.images.shape) == (30, 3, 256, 256)  # 18 train + 12 val, decoded at 256 px (40x52 jpgs)
    assert fl.holdout.tolist() == list(range(18, 30)) and fl.labels[18:].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert len(load_split("tv:flowers102", "test", datasets_root=tv, cache_dir=cache)) == 12
    dtd = load_split("tv:dtd?size=24", "trainval", datasets_root=tv, cache_dir=cache)
    assert dtd.classes == ["banded", "dotted", "striped"] and dtd.holdout.tolist() == list(range(15, 30))
    assert tuple(dtd.images.shape[1:]) == (3, 24, 24)
    train = load_split("tv:eurosat", "train", datasets_root=tv, cache_dir=cache)
    test = load_split("tv:eurosat", "test", datasets_root=tv, cache_dir=cache)
    assert (len(train), len(test)) == (24, 6) and tuple(train.images.shape[1:]) == (3, 64, 64)  # native 64 px
    again = load_split("tv:eurosat", "train", datasets_root=tv, cache_dir=cache)  # cache hit: same entry
    assert again.fingerprint == train.fingerprint and torch.equal(again.images, train.images)


def test_fingerprint_follows_files_and_labels(tv, tmp_path):
    a = load_split("tv:dtd?size=16", "test", datasets_root=tv, cache_dir=tmp_path / "c")
    lines = (tv / "dtd/dtd/labels/test1.txt").read_text()
    try:  # swap two rows' classes: the same files, other labels -> another fingerprint
        rows = lines.splitlines()
        rows[0], rows[-1] = rows[-1], rows[0]
        (tv / "dtd/dtd/labels/test1.txt").write_text("\n".join(rows) + "\n")
        b = load_split("tv:dtd?size=16", "test", datasets_root=tv, cache_dir=tmp_path / "c")
    finally:
        (tv / "dtd/dtd/labels/test1.txt").write_text(lines)
    assert a.fingerprint != b.fingerprint


def test_torchvision_md5_check_still_runs(tv_root, tmp_path):
    """Without accept_fake_md5s torchvision compares the fakes with the official md5s and refuses them: one line."""
    with pytest.raises(DataError, match=r"torchvision\.datasets\.CIFAR10 cannot read .*official files"):
        load_split("tv:cifar10", "train", datasets_root=tv_root, cache_dir=tmp_path)


def test_seeded_split_is_fixed_per_class():
    labels = [0] * 40 + [1] * 35 + [2] * 3
    train, test = seeded_split(labels, 0, train_per_class=30)
    y = torch.tensor(labels)
    assert y[train].bincount().tolist() == [30, 30, 2] and y[test].bincount().tolist() == [10, 5, 1]
    assert not set(train) & set(test) and (train, test) == seeded_split(labels, 0, train_per_class=30)
    assert seeded_split(labels, 1, train_per_class=30) != (train, test)
    tr, te = seeded_split(labels, 0, train_per_class=30, test_per_class=4)
    assert torch.tensor(labels)[te].bincount().tolist() == [4, 4, 1]
    tr, te = seeded_split([0] * 10 + [1] * 5, 0, train_frac=0.8)
    assert (len(tr), len(te)) == (12, 3)


def test_given_holdout_rows_are_the_selection_split():
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    fit, hold = holdout_split(labels, 0.5, 0, holdout=torch.tensor([4, 5]))
    assert fit.tolist() == [0, 1, 2, 3] and hold.tolist() == [4, 5]


def test_registry_covers_the_datasets_and_suites():
    assert {"cifar10", "cifar100", "stl10", "flowers102", "pets", "dtd", "food101", "aircraft", "cars",
            "caltech101", "eurosat", "sun397"} <= set(TV_DATASETS)
    full = get_suite("transfer")
    assert full.id == "transfer-v1" and len(full.benchmarks) == 12
    for suite in SUITES.values():
        for b in suite.specs():
            assert b.data.startswith("tv:") and b.eval_split == "test" and b.img_size == 224
            assert {s.split("_")[0] for s in suite.scores} <= set(b.probes)
    assert set(get_suite("transfer-small-v1").benchmarks) < set(full.benchmarks)
    assert get_benchmark("flowers102-v1").train_split == "trainval"  # selected on val, refit on train + val
    assert get_benchmark("cifar10-v1").upsample and not get_benchmark("dtd-v1").upsample


def _scores(rec):
    return {k: v for k, v in rec.scores.items() if k.endswith("_top1")}


@pytest.mark.slow
def test_suite_end_to_end_resumes_after_a_kill(tiny_suite, tv, tmp_path, monkeypatch):
    import bench.runner
    res, cache = tmp_path / "results", tmp_path / "cache"
    real = bench.runner.load_benchmark_data

    def killed_at_second(benchmark, *a, **k):
        if benchmark.name == "t-cifar100":
            raise KeyboardInterrupt  # the suite is killed between its first and second dataset
        return real(benchmark, *a, **k)

    monkeypatch.setattr(bench.runner, "load_benchmark_data", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate_suite(ColourNet(), tiny_suite, results_dir=res, datasets_root=tv, cache_dir=cache, log=None)
    assert [r.benchmark.id for r in load_records(res)] == ["t-cifar10-v1"]
    monkeypatch.setattr(bench.runner, "load_benchmark_data", real)
    run = evaluate_suite(ColourNet(), tiny_suite, results_dir=res, datasets_root=tv, cache_dir=cache, log=None)
    assert run.complete and run.reused == ["t-cifar10-v1"] and len(run.records) == 5
    recs = load_records(res)
    assert sorted(r.benchmark.id for r in recs) == sorted(tiny_suite.benchmarks)  # one record per dataset
    for r in recs:
        assert r.status == "ok" and r.origin == "external" and r.data.spec.startswith("tv:")
        assert set(_scores(r)) == {"knn_top1", "linear_top1"}
    fl = next(r for r in recs if r.benchmark.name == "t-flowers102")
    assert fl.holdout["linear_top1"] >= 0 and set(fl.selected["linear"]) == {"lr", "wd"}
    # colour tells the fake classes apart: the probes learn them
    assert min(r.scores["linear_top1"] for r in recs) > 60
    # a third run finds everything recorded: nothing is scored again
    again = evaluate_suite(ColourNet(), tiny_suite, results_dir=res, datasets_root=tv, cache_dir=cache, log=None)
    assert sorted(again.reused) == sorted(tiny_suite.benchmarks) and len(load_records(res)) == 5
    # another encoder on all but one dataset: a partial row, no aggregate beside the complete one
    partial = Suite(name="t-part", version=1, description="", benchmarks=tiny_suite.benchmarks[:4])
    evaluate_suite(ColourNet(seed=1), partial, results_dir=res, name="other", datasets_root=tv, cache_dir=cache,
                   log=None)
    df = build_suite_leaderboard(tiny_suite, {b: load_records(res, b) for b in tiny_suite.benchmarks})
    assert list(df["label"]) == ["ColourNet", "other"] and list(df["complete"]) == [True, False]
    top = df.iloc[0]
    linear = [top[f"{b}:linear_top1_mean"] for b in tiny_suite.benchmarks]
    assert top["mean:linear_top1_mean"] == pytest.approx(sum(linear) / 5)
    assert top["avg_rank:linear_top1_mean"] == 1.0 and top["n"] == 1 and top["rank"] == 1
    assert math.isnan(df.iloc[1]["mean:linear_top1_mean"]) and df.iloc[1]["missing"] == "t-eurosat-v1"
    assert pd_isna(df.iloc[1]["rank"])
    _, paths = write_suite_leaderboard(tiny_suite, res, tmp_path / "lb", ("md", "csv", "tex", "html"))
    md = paths[0].read_text()
    assert "### linear_top1 - incomplete (no aggregate)" in md and "| 1 | ColourNet |" in md
    html = paths[3].read_text()
    assert "<svg" in html and "t-eurosat" in html and html.count("<table") == 4
    boards = suite_boards(df)
    assert list(boards) == [*tiny_suite.benchmarks, "t-transfer-v1 mean", "t-transfer-v1 avg rank"]
    assert boards["t-transfer-v1 avg rank"].attrs["lower_is_better"]


def pd_isna(v) -> bool:
    import pandas as pd
    return bool(pd.isna(v))


@pytest.mark.slow
def test_cli_run_probe_eval_leaderboard_and_table(tiny_suite, tv, tmp_path, capsys):
    """`bench run --suite` trains (a random-init baseline here) and probes every suite dataset; `bench probe RUN
    --suite` then finds them all recorded; `bench eval --model --suite` adds an external row; the leaderboard and a
    paper table are built from them."""
    res, cache = str(tmp_path / "res"), str(tmp_path / "cache")
    common = ["--datasets-root", str(tv), "--results", res, "--cache-dir", cache]
    assert main(["run", "--method", "random", "--backbone", "resnet18", "--img-size", "16", "--benchmark",
                 "t-eurosat-v1", "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--suite", tiny_suite.id,
                 *common]) == 0
    out = capsys.readouterr().out
    assert f"{tiny_suite.id}: 5 of 5 datasets recorded (1 found already)" in out  # its own run
    run_dir = next((tmp_path / "runs").glob("*/*"))
    assert main(["probe", str(run_dir), "--suite", tiny_suite.id, *common]) == 0
    assert "5 of 5 datasets recorded (5 found already)" in capsys.readouterr().out
    assert main(["eval", "--model", _encoder_file(tmp_path), "--name", "mean-rgb", "--suite", tiny_suite.id,
                 *common]) == 0
    capsys.readouterr()
    for b in tiny_suite.benchmarks:
        assert len(load_records(res, b)) == 2
    lb = tmp_path / "lb"
    assert main(["leaderboard", tiny_suite.id, "--results", res, "--out", str(lb), "--format", "md", "csv", "html",
                 "tex"]) == 0
    md = (lb / tiny_suite.id / "leaderboard.md").read_text()
    assert "mean-rgb" in md and "random" in md and "avg rank (95% CI)" in md
    assert "<svg" in (lb / tiny_suite.id / "leaderboard.html").read_text()
    capsys.readouterr()
    assert main(["benchmarks"]) == 0
    listing = capsys.readouterr().out
    assert "transfer-v1" in listing and "transfer-small-v1" in listing and "flowers102-v1" in listing
    spec = tmp_path / "table.yaml"
    spec.write_text(f"benchmarks: [{tiny_suite.id}]\nscores: [linear_top1]\nmethods: [mean-rgb, random]\n"
                    f"formats: [md]\n")
    assert main(["table", str(spec), "--results", res]) == 0
    table = capsys.readouterr().out
    assert f"{tiny_suite.id} mean linear top-1" in table and f"{tiny_suite.id} avg rank linear top-1" in table


def test_more_layouts_read_through_torchvision(tmp_path):
    """Pets, Caltech-101, Food-101, FGVC-Aircraft and SUN397 fakes: official splits, val hold-out, seeded splits."""
    root, cache = tmp_path / "tv", tmp_path / "cache"
    for make in (fakes.make_pets, fakes.make_caltech101, fakes.make_food101, fakes.make_aircraft, fakes.make_sun397):
        make(root)

    def load(spec, split):
        return load_split(f"tv:{spec}?size=16", split, datasets_root=root, cache_dir=cache)
    pets = load("pets", "trainval")
    assert len(pets) == 12 and pets.classes == ["Abyssinian", "American Bulldog", "Bengal"] and pets.holdout is None
    assert len(load("pets", "test")) == 6
    cal_train, cal_test = load("caltech101", "train"), load("caltech101", "test")
    assert cal_train.classes == ["accordion", "airplanes", "anchor"]  # BACKGROUND_Google is not a class
    assert (len(cal_train), len(cal_test)) == (21, 3)  # 30 per class asked, 7 of 8 kept so a test image stays
    assert load("food101", "train").labels.bincount().tolist() == [4, 4, 4]
    air = load("aircraft", "trainval")
    assert air.classes[2] == "Cessna 172" and air.holdout.tolist() == list(range(9, 18))
    sun = load("sun397", "train")
    assert sun.classes == ["abbey", "beach", "canyon"] and len(sun) == 15 and len(load("sun397", "test")) == 3


def _encoder_file(tmp_path) -> str:
    """A model spec ``path/file.py:make`` of a parameter-free encoder (channel means)."""
    enc = tmp_path / "enc.py"
    enc.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), "
                   "torch.nn.Flatten())\n")
    return f"{enc}:make"


@pytest.mark.slow
def test_allow_missing_scores_the_rest_and_says_how_to_continue(tiny_suite, tmp_path, capsys, monkeypatch):
    root = fakes.make_dtd(tmp_path / "only-dtd")
    suite = Suite(name="t-two", version=1, description="", benchmarks=("t-dtd-v1", "t-eurosat-v1"))
    monkeypatch.setitem(SUITES, suite.id, suite)
    res = str(tmp_path / "res")
    norm = ["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"]  # part of the config: the hint repeats it
    argv = ["eval", "--model", _encoder_file(tmp_path), *norm, "--suite", suite.id, "--datasets-root", str(root),
            "--results", res, "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    assert "suite t-two-v1 lacks 1 of its 2 datasets (t-eurosat-v1)" in capsys.readouterr().err
    assert load_records(res) == []  # nothing was scored before the check
    assert main([*argv, "--allow-missing"]) == 0
    out = capsys.readouterr().out
    assert "t-two-v1: 1 of 2 datasets recorded (0 found already); missing: t-eurosat-v1" in out
    assert (f"continue: bench eval --model {_encoder_file(tmp_path)} {' '.join(norm)} --suite t-two-v1 "
            f"--datasets-root {root}") in out
    assert [r.benchmark.id for r in load_records(res)] == ["t-dtd-v1"]


def _rec(bench: str, method: str, seed: int, linear: float, knn: float = 50.0):
    from bench.records import RunRecord
    b = get_benchmark(bench)
    config = {"model": method, "seed": seed}
    return RunRecord(run_id=f"{method}-{bench}-s{seed}", status="ok", method=method, backbone="net",
                     benchmark={"name": b.name, "version": b.version, "spec_hash": b.spec_hash()},
                     data={"spec": b.data, "fingerprint": f"fp-{bench}"}, seed=seed, config=config,
                     config_hash=f"{method}{seed}", git_sha=None, env={}, hardware={}, wall_time_s=1.0,
                     images_seen=None, scores={"linear_top1": linear, "knn_top1": knn}, selected={},
                     created_at="2025-01-01T00:00:00+00:00")


def test_suite_aggregate_matches_hand_computed_mean_and_rank():
    """Two datasets; A (seeds 0, 1) and B (seed 0) complete, C lacks dataset two."""
    suite = Suite(name="hand", version=1, description="", benchmarks=("dtd-v1", "pets-v1"))
    records = {"dtd-v1": [_rec("dtd-v1", "A", 0, 80), _rec("dtd-v1", "A", 1, 70), _rec("dtd-v1", "B", 0, 60),
                          _rec("dtd-v1", "C", 0, 99)],
               "pets-v1": [_rec("pets-v1", "A", 0, 40), _rec("pets-v1", "A", 1, 60), _rec("pets-v1", "B", 0, 55)]}
    df = build_suite_leaderboard(suite, records).set_index("method")
    a, b = df.loc["A"], df.loc["B"]
    assert a["dtd-v1:linear_top1_mean"] == 75 and a["dtd-v1:linear_top1_n"] == 2
    assert a["dtd-v1:linear_top1_std"] == pytest.approx(math.sqrt(50))
    # per seed: A s0 (80 + 40) / 2 = 60, s1 (70 + 60) / 2 = 65 -> 62.5 ± t(0.975, 1) * std / sqrt(2)
    assert a["mean:linear_top1_mean"] == 62.5 and a["mean:linear_top1_n"] == 2
    assert a["mean:linear_top1_ci95"] == pytest.approx(12.7062 * math.sqrt(12.5) / math.sqrt(2))
    assert b["mean:linear_top1_mean"] == 57.5 and b["rank"] == 2 and a["rank"] == 1
    # ranks against the other complete row's dataset means (C is not complete: never ranked against)
    # A s0: dtd 80 vs B 60 -> 1, pets 40 vs B 55 -> 2: 1.5; A s1: 70 -> 1, 60 -> 1: 1.0; mean 1.25
    # B s0: dtd 60 vs A 75 -> 2, pets 55 vs A 50 -> 1: 1.5
    assert a["avg_rank:linear_top1_mean"] == 1.25 and b["avg_rank:linear_top1_mean"] == 1.5
    c = df.loc["C"]
    assert not c["complete"] and c["missing"] == "pets-v1" and math.isnan(c["mean:linear_top1_mean"])
    assert c["dtd-v1:linear_top1_mean"] == 99  # its cells are shown, apart from the aggregates
