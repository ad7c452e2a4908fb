"""`bench perf` smoke test at tiny sizes: every section runs, the report has its ratios and is valid JSON.
Speed itself is never asserted (that is what `bench perf` is for)."""

from __future__ import annotations

import json

import numpy as np
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


def test_synthetic_imagenet_tree_has_full_size_jpegs(tmp_path):
    from PIL import Image

    from bench.perf.data_path import synthetic_imagenet_tree
    split = synthetic_imagenet_tree(tmp_path / "train", 4, classes=2)
    files = sorted(split.rglob("*.JPEG"))
    assert [f.parent.name for f in files] == ["n00000000", "n00000000", "n00000001", "n00000001"]
    sizes = set()
    for f in files:
        with Image.open(f) as im:
            assert im.format == "JPEG" and np.asarray(im).std() > 20  # not a flat colour: decodes like a photo
            sizes.add(im.size)
    assert sizes == {(500, 375), (375, 500)}


def test_unknown_section_is_a_clear_error(tmp_path, capsys):
    assert main(["perf", "--only", "train,gpu", "--out", str(tmp_path / "p.json")]) == 2
    assert "unknown perf section" in capsys.readouterr().err


@pytest.mark.slow
def test_perf_quick_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert main(["perf", "--quick", "--batch-size", "4", "--img-size", "16", "--warmup", "1", "--steps", "1",
                 "--data-batches", "1", "--decode-images", "6", "--decode-size", "16", "--cache-rows", "10,80",
                 "--pipeline-source-px", "24", "--probe-samples", "64", "--probe-epochs", "1", "--probe-images", "30",
                 "--knn-size", "200", "--knn-dim", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("harness step", "bare PyTorch loop", "data pipeline", "20-member grid", "k-NN faiss",
                "decode, 1 worker", "open cached split", "conventional pipeline", "harness_vs_bare", "grid20_vs_grid1",
                "faiss_speedup", "decode_speedup", "load_large_vs_small", "probes_vs_extraction",
                "imagenette-mini-v1: extraction", "imagenette-mini-v1: fewshot"):
        assert row in text
    report = json.loads(out.read_text())
    assert set(report["ratios"]) == {"harness_vs_bare", "grid20_vs_grid1", "faiss_speedup", "decode_speedup",
                                     "load_large_vs_small", "harness_vs_conventional", "probes_vs_extraction"}
    for r in report["ratios"].values():
        assert r["value"] > 0 and isinstance(r["met"], bool) and r["target"]
    t = report["train"]
    assert t["method"] == "simclr" and t["batch_size"] == 4 and t["timed_steps"] == 1 and t["views_per_image"] == 2
    assert t["harness_images_per_s"] > 0 and t["bare_images_per_s"] > 0
    assert report["knn"]["top1_agreement"] == 1.0 and report["knn"]["train"] == 200
    assert report["probe"]["grid1_s"] > 0 and report["data"]["views_per_s"] > 0
    dec, load = report["data"]["decode"], report["data"]["cache_load"]
    assert dec["images"] == 6 and dec["size"] == 16 and dec["identical_rows"] is True and dec["images_per_s"]["1"] > 0
    assert [e["rows"] for e in load["entries"]] == [10, 80] and load["size_ratio"] > 7
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
                 "--decode-images", "2", "--decode-size", "16", "--cache-rows", "4,8", "--out", str(out)]) == 0
    t = json.loads(out.read_text())["train"]
    assert t["method"] == "vjepa" and t["backbone"] == "video_vit_tiny" and t["precision"] == "32-true"
    assert t["harness_images_per_s"] > 0 and t["bare_images_per_s"] > 0


def test_conventional_transform_makes_the_views_the_method_asks_for():
    from PIL import Image

    from bench.augment import IMAGENET_MEAN, IMAGENET_STD, ViewSpec
    from bench.perf.pipeline import MultiView, conventional_transform
    spec = ViewSpec(size=12, jitter_p=0.0)  # crop, flip, grayscale leave a white image white; jitter need not
    views = MultiView([conventional_transform(spec, IMAGENET_MEAN, IMAGENET_STD)] * 2)(
        Image.fromarray(np.full((40, 30, 3), 255, np.uint8)))
    assert len(views) == 2 and all(v.shape == (3, 12, 12) and v.dtype == torch.float32 for v in views)
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)  # normalised like the harness's views
    assert torch.allclose(views[0].amax(dim=(1, 2)), white, atol=1e-5)


def test_batched_augmentation_runs_on_one_cpu_thread_with_the_same_views():
    from bench.augment import ViewAugmenter, ViewSpec
    x = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    aug = ViewAugmenter([ViewSpec.simclr(), ViewSpec(blur_p=1.0, solarize_p=0.5)], 12)
    seen = []
    aug._pipes[aug._keys[0]].register_forward_pre_hook(lambda m, a: seen.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    torch.manual_seed(0)
    views = aug(x)
    assert seen == [1] and torch.get_num_threads() == 2  # one thread inside, restored after
    torch.manual_seed(0)
    with torch.no_grad():  # the pipelines themselves, on torch's own thread count: the same pixels
        from bench.augment import normalize, to_float
        direct = [normalize(aug._pipes[k](to_float(x)).clamp_(0, 1)) for k in aug._keys]
    assert all(torch.equal(a, b) for a, b in zip(views, direct))


@pytest.mark.slow
def test_perf_pipeline_times_the_harness_against_a_conventional_pipeline(tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert main(["perf", "--only", "pipeline", "--batch-size", "4", "--img-size", "16", "--warmup", "1", "--steps",
                 "1", "--pipeline-source-px", "24", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "harness step (uint8 cache)" in text and "conventional pipeline" in text and "harness_vs_conventional" in text
    report = json.loads(out.read_text())
    p = report["pipeline"]
    assert p["batch_size"] == 4 and p["img_size"] == 16 and p["source_px"] == 24 and p["timed_steps"] == 1
    assert p["harness_images_per_s"] > 0 and p["conventional_images_per_s"] > 0 and p["conventional_workers"] >= 1
    assert p["cpu_s_per_image"]["harness"] > 0 and p["cpu_s_per_image"]["conventional"] > 0
    assert 0 < p["profile"]["augment_share_of_step"] and set(report["ratios"]) == {"harness_vs_conventional"}
