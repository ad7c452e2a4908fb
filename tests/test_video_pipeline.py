"""Video end to end: moving-shapes through `bench train` / `bench probe` / `bench run` into records, the
video probes on frozen clip encoders, the ``videofolder:`` loader, and the video benchmark's spec."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main
from bench.data.moving_shapes import moving_shapes
from bench.errors import DataError
from bench.records import load_records

TINY = "moving-shapes:n_train=48,n_val=24"
#: a 1-block video ViT in fp32: seconds per step on a shared 2-core CPU
FAST = ["--set", "backbone_kwargs.depth=1", "--set", "precision=32-true", "--no-progress"]


def _dirs(tmp_path):
    return ["--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]


@pytest.mark.slow
def test_train_probe_and_run_on_moving_shapes_write_video_records(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["train", "--method", "vjepa", "--data", TINY, "--backbone", "video_vit_tiny", "--epochs", "1",
                 "--batch-size", "16", "--set", "method_kwargs.pred_depth=1", *FAST, *_dirs(tmp_path)]) == 0
    run_dir = next((tmp_path / "runs").glob("custom-*/*vjepa*"))
    info = json.loads((run_dir / "run.json").read_text())
    assert info["benchmark"] == "custom-moving-shapes-n-train-48-n-val-24-v1"
    assert info["train"]["images_seen"] == 48 and info["train"]["epochs"] == 1  # 3 steps of 16 clips
    assert main(["probe", str(run_dir), "--data", TINY, "--results", str(results), *_dirs(tmp_path)[2:]]) == 0
    assert main(["run", "--recipe", "random_video", "--data", TINY, "--results", str(results), *FAST,
                 *_dirs(tmp_path)]) == 0
    records = {r.method: r for r in load_records(results)}
    assert set(records) == {"vjepa", "random"}
    for rec in records.values():
        assert rec.status == "ok" and rec.backbone == "video_vit_tiny" and rec.data.spec == TINY
        assert rec.benchmark.id == info["benchmark"] and rec.benchmark.spec_hash
        # direction (the headline column) by every probe, shape beside it
        assert {"knn_top1", "linear_top1", "attentive_top1", "shape_knn_top1", "shape_linear_top1",
                "shape_attentive_top1"} <= set(rec.scores)
        assert set(rec.selected) >= {"attentive", "shape_attentive"} and "lr" in rec.selected["attentive"]
    capsys.readouterr()
    assert main(["leaderboard", info["benchmark"], "--results", str(results), "--out", str(tmp_path / "lb")]) == 0
    assert "shape_attentive_top1" in (tmp_path / "lb" / info["benchmark"] / "leaderboard.csv").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--method", "simclr", "--data", TINY], "holds video clips but backbone 'resnet18'"),
    (["--recipe", "random_video", "--benchmark", "imagenette-mini-v1"], "holds images but backbone 'video_vit_tiny'"),
    (["--method", "vjepa", "--data", TINY, "--benchmark", "imagenette-mini-v1"], "is video data but"),
    (["--recipe", "random_video", "--data", TINY, "--set", "backbone_kwargs.tubelet=3"], "tubelets"),
    (["--recipe", "random_video", "--data", "moving-shapes:n_frames=3"], "bad moving-shapes option"),
])
def test_video_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    fast = FAST[2:] if "simclr" in argv else FAST  # FAST's ViT depth is no resnet option
    assert main(["run", *argv, "--results", str(tmp_path / "r"), *fast, *_dirs(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_video_probes_on_frozen_clip_encoder(tmp_path):
    from bench.backbones import create_backbone
    from bench.benchmarks import get_benchmark
    from bench.data import load_split
    from probes.evaluate import evaluate_encoder
    from probes.features import extract_features

    torch.manual_seed(0)
    enc = create_backbone("video_vit_tiny", 32, patch_size=8, tubelet=2, depth=1)
    clips, _ = moving_shapes(10, frames=4, size=32, seed=0)
    # clips are batched (any batch size gives the same features); tokens are all t*h*w tubelet tokens
    a = extract_features(enc, clips, img_size=32, batch_size=3)
    b = extract_features(enc, clips, img_size=32, batch_size=64)
    tok = extract_features(enc, clips, img_size=32, tokens=True, cache_dir=tmp_path, data_key="k")
    assert a.shape == (10, 192) and torch.allclose(a, b, atol=1e-4)
    assert tok.shape == (10, 2 * 4 * 4, 192) and tok.dtype == torch.float16
    assert torch.allclose(tok.float().mean(1), a, atol=1e-2)  # pooled clip feature = mean of the tokens
    assert torch.equal(extract_features(enc, clips, img_size=32, tokens=True, cache_dir=tmp_path, data_key="k"), tok)

    protocol = get_benchmark("moving-shapes-v1").model_copy(update=dict(
        frames=4, knn_k=(5, 10), knn_t=(0.07,), linear_lr=(0.1, 1.0), linear_wd=(0.0,), linear_epochs=5,
        attentive_lr=(1e-2, 3e-2), attentive_wd=(1e-2,), attentive_epochs=5))
    train = load_split(TINY.replace("48", "120"), "train", size=32, frames=4, label="direction")
    val = load_split(TINY.replace("48", "120"), "val", size=32, frames=4, label="direction")
    assert train.images.shape == (120, 4, 3, 32, 32) and train.classes == ["right", "left", "down", "up"]
    report = evaluate_encoder(enc, train, val, protocol, device="cpu", cache_dir=tmp_path)
    for column in ("", "shape_"):
        for probe in ("knn", "linear", "attentive"):
            assert 0 <= report["scores"][f"{column}{probe}_top1"] <= 100
    assert report["selected"]["shape_knn"]["k"] in (5, 10)
    # selection uses the train hold-out only: scrambled val labels move no choice
    val.labels = val.labels[torch.randperm(len(val.labels), generator=torch.Generator().manual_seed(1))]
    val.label_sets = {k: (y.flip(0), c) for k, (y, c) in val.label_sets.items()}
    again = evaluate_encoder(enc, train, val, protocol, device="cpu", cache_dir=tmp_path)
    assert again["selected"] == report["selected"] and again["holdout"] == report["holdout"]


def test_image_spec_hashes_are_unchanged_and_video_spec_is_pinned():
    from bench.benchmarks import get_benchmark
    from bench.runner import load_benchmark_data
    # the video fields are hashed only when set: committed imagenette64-v1 records keep aggregating
    assert get_benchmark("imagenette64-v1").spec_hash() == "fa1c00c252deb493"
    bench = get_benchmark("moving-shapes-v1")
    assert bench.is_video and bench.headline == "attentive_top1" and bench.spec_hash() != \
        bench.model_copy(update={"frames": 16}).spec_hash()
    data = load_benchmark_data(bench)  # raises if the rendered clips differ from the pinned fingerprint
    assert data.train.images.shape == (4000, 8, 3, 32, 32) and len(data.eval) == 1000


# ------------------------------------------------------------------------------------------- videofolder
def _write_video(path, n_frames: int, colour, w=40, h=32, codec="mpeg4"):
    """A bar of ``colour`` sliding right over ``n_frames`` frames."""
    import av
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n_frames):
            img = np.full((h, w, 3), 20, np.uint8)
            img[:, (3 * i) % (w - 8):(3 * i) % (w - 8) + 8] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("videos")
    for split, n in (("train", 4), ("val", 2)):
        for cls, colour in (("red", (230, 30, 30)), ("blue", (30, 30, 230))):
            for i in range(n):
                _write_video(root / split / cls / f"{i}.mp4", n_frames=6 + 3 * i, colour=colour)
    return root


def test_videofolder_clips_are_sampled_resized_and_cached(video_folder, tmp_path, monkeypatch):
    from bench.data import load_split
    from bench.data import video_folder as vf
    spec = f"videofolder:{video_folder}"
    data = load_split(spec, "train", size=16, frames=4, stride=2, cache_dir=tmp_path)
    assert data.images.shape == (8, 4, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.classes == ["blue", "red"] and data.labels.tolist() == [0] * 4 + [1] * 4
    red = data.images[4].float().mean((0, 2, 3))
    assert red[0] > red[2] + 30  # colours survive decoding
    assert not torch.equal(data.images[4, 0], data.images[4, 1])  # the bar moves between sampled frames
    assert vf.clip_indices(6, 4, 2) == [0, 2, 4, 5] and vf.clip_indices(30, 4, 2) == [11, 13, 15, 17]
    # the second load is the memory-mapped cache: nothing is decoded
    monkeypatch.setattr(vf, "read_clip", lambda *a, **k: pytest.fail("decoded again"))
    again = load_split(spec, "train", size=16, frames=4, stride=2, cache_dir=tmp_path)
    assert torch.equal(again.images, data.images) and again.fingerprint == data.fingerprint
    monkeypatch.undo()
    other = load_split(spec, "train", size=16, frames=4, stride=1, cache_dir=tmp_path)
    assert other.fingerprint != data.fingerprint  # the sampling is part of what the data is


def test_videofolder_run_end_to_end_and_corrupt_file_error(video_folder, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--recipe", "random_video", "--data", f"videofolder:{video_folder}", "--results",
                 str(results), *FAST, *_dirs(tmp_path)]) == 0
    (rec,) = load_records(results)
    assert rec.benchmark.name == f"custom-{video_folder.name.lower()}" and rec.data.spec.startswith("videofolder:")
    assert {"knn_top1", "attentive_top1"} <= set(rec.scores) and not any(k.startswith("shape_") for k in rec.scores)
    bad = video_folder.parent / "corrupt"
    _write_video(bad / "train" / "a" / "ok.mp4", 6, (200, 200, 200))
    (bad / "train" / "a" / "broken.mp4").write_bytes(torch.randint(0, 256, (3000,), dtype=torch.uint8).numpy().tobytes())
    capsys.readouterr()
    assert main(["run", "--recipe", "random_video", "--data", f"videofolder:{bad}", "--results", str(results),
                 *FAST, *_dirs(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot decode video ") and "broken.mp4" in err and err.count("\n") == 1
    with pytest.raises(DataError, match="broken.mp4"):
        from bench.data.video_folder import read_clip
        read_clip(bad / "train" / "a" / "broken.mp4", 4)


def test_adhoc_video_data_takes_the_latest_moving_shapes_protocol():
    from bench.benchmarks import adhoc_benchmark, get_benchmark
    latest = get_benchmark("moving-shapes")
    assert latest.superseded_by is None and get_benchmark("moving-shapes-v1").superseded_by == latest.id
    b = adhoc_benchmark(TINY)
    assert b.id == "custom-moving-shapes-n-train-48-n-val-24-v1" and b.attentive_standardize == latest.attentive_standardize
    assert adhoc_benchmark(TINY, base="moving-shapes-v1").attentive_standardize != latest.attentive_standardize
