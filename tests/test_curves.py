"""`bench curves`: per-epoch curves merged over the training segments of a resumed run, and the plot file."""

from __future__ import annotations

import json
import os

import pytest

from bench.cli import main
from bench.curves import load_curves
from bench.errors import BenchError

HEADER = "epoch,monitor/effective_rank,monitor/feature_std,online/acc_epoch,online/acc_step,step,train/loss_epoch,train/loss_step\n"


def _run(tmp_path, name, segments):
    run = tmp_path / name
    (run / "run.json").parent.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"recipe": name, "config": {"seed": 3}}))
    for i, text in enumerate(segments):
        log = run / "logs" / ("" if i == 0 else f"resumed-{i}") / "metrics.csv"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(HEADER + text)
        os.utime(log, (1000 + i, 1000 + i))  # written in this order
    return run


def test_curves_merge_the_segments_of_a_resumed_run(tmp_path):
    run = _run(tmp_path, "simclr", [
        # epoch 0 complete; epoch 1 interrupted mid-epoch (step rows only, no epoch-level row)
        "0,,,,20.0,5,,4.0\n0,100.0,0.5,21.0,,9,3.5,\n1,,,,30.0,12,,3.0\n",
        # resumed: epoch 1 logged again by the new segment, then epoch 2
        "1,,,,31.0,19,,2.9\n1,90.0,0.45,33.0,,19,2.8,\n2,80.0,0.44,40.0,,29,2.5,\n",
    ])
    df = load_curves(run)
    assert list(df.index) == [0, 1, 2]
    assert list(df["train/loss_epoch"]) == [3.5, 2.8, 2.5]
    assert list(df["online/acc_epoch"]) == [21.0, 33.0, 40.0]
    assert list(df["monitor/effective_rank"]) == [100.0, 90.0, 80.0]


def test_bench_curves_writes_the_plot_and_names_bad_input(tmp_path, capsys):
    a = _run(tmp_path, "a", ["0,100.0,0.5,21.0,,9,3.5,\n1,90.0,0.4,30.0,,19,3.0,\n"])
    b = _run(tmp_path, "b", ["0,50.0,0.3,15.0,,9,-1.5,\n"])  # a negative loss: linear scale
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        out = tmp_path / f"c{suffix}"
        assert main(["curves", str(a), str(b), "--out", str(out)]) == 0
        assert out.read_bytes().startswith(magic)
    svg = (tmp_path / "c.svg").read_text()
    assert "a s3" in svg and "b s3" in svg  # one legend entry per run
    assert main(["curves", str(a), "--out", str(tmp_path / "c.txt")]) == 2
    assert main(["curves", str(tmp_path), "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert "give a .png, .svg or .pdf file" in err and "has no training logs" in err
    with pytest.raises(BenchError, match="no training logs"):
        load_curves(tmp_path / "nowhere")
