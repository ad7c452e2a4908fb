"""`bench perf` smoke test at tiny sizes: every section runs, the report has its ratios and is valid JSON.
Speed itself is never asserted (that is what `bench perf` is for)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import build_parser, main


def test_perf_has_help(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["perf", "--help"])
    assert info.value.code == 0 and "--quick" in capsys.readouterr().out


def test_quick_options_and_overrides():
    from bench.perf import QUICK, PerfOptions, options_from
    assert options_from() == PerfOptions()
    quick = options_from(quick=True, steps=1, knn_train=None)
    assert quick.batch_size == QUICK["batch_size"] and quick.knn_train == QUICK["knn_train"] and quick.steps == 1


def test_unknown_section_is_a_clear_error(tmp_path, capsys):
    assert main(["perf", "--only", "train,gpu", "--out", str(tmp_path / "p.json")]) == 2
    assert "unknown perf section" in capsys.readouterr().err


@pytest.mark.slow
def test_perf_quick_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert main(["perf", "--quick", "--batch-size", "4", "--img-size", "16", "--warmup", "1", "--steps", "1",
                 "--data-batches", "1", "--probe-samples", "64", "--probe-epochs", "1", "--probe-images", "30",
                 "--knn-size", "200",
                 "--knn-dim", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("harness step", "bare PyTorch loop", "data pipeline", "20-member grid", "k-NN faiss",
                "harness_vs_bare", "grid20_vs_grid1", "faiss_speedup", "probes_vs_extraction",
                "imagenette-mini-v1: extraction", "imagenette-mini-v1: fewshot"):
        assert row in text
    report = json.loads(out.read_text())
    assert set(report["ratios"]) == {"harness_vs_bare", "grid20_vs_grid1", "faiss_speedup", "probes_vs_extraction"}
    for r in report["ratios"].values():
        assert r["value"] > 0 and isinstance(r["met"], bool) and r["target"]
    t = report["train"]
    assert t["method"] == "simclr" and t["batch_size"] == 4 and t["timed_steps"] == 1 and t["views_per_image"] == 2
    assert t["harness_images_per_s"] > 0 and t["bare_images_per_s"] > 0
    assert report["knn"]["top1_agreement"] == 1.0 and report["knn"]["train"] == 200
    assert report["probe"]["grid1_s"] > 0 and report["data"]["views_per_s"] > 0
    p = report["probe"]  # one benchmark's extraction against each of its probes (+ few-shot, estimators)
    assert p["benchmark"] == "imagenette-mini-v1" and p["images"] == {"train": 30, "val": 30}
    assert set(p["seconds"]) == {"features", "tokens", "knn", "linear", "attentive", "fewshot", "estimators"}
    assert p["probes_vs_extraction"] == pytest.approx(p["probes_s"] / p["extraction_s"])
    assert report["env"]["torch"] == torch.__version__ and "loadavg_start" in report


@pytest.mark.slow
def test_perf_times_a_video_method_on_clips_in_the_precision_asked(tmp_path, capsys):
    """V-JEPA's video backbone gets clips (N, frames, 3, S, S) and keeps its Conv3d weights out of channels-last."""
    out = tmp_path / "perf.json"
    assert main(["perf", "--only", "train,data", "--method", "vjepa", "--precision", "32-true", "--frames", "4",
                 "--batch-size", "2", "--img-size", "16", "--warmup", "1", "--steps", "1", "--data-batches", "1",
                 "--out", str(out)]) == 0
    t = json.loads(out.read_text())["train"]
    assert t["method"] == "vjepa" and t["backbone"] == "video_vit_tiny" and t["precision"] == "32-true"
    assert t["harness_images_per_s"] > 0 and t["bare_images_per_s"] > 0
