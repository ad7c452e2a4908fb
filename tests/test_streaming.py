"""The streaming path (bench.data.streaming): a split over the cache budget is packed as its file bytes and decoded
per batch. Evaluation features equal the cached path's, training crops come from the full image, a corrupt packed
byte is caught (sample checksum on load, `bench cache verify` in full), a bad file is one error line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.augment import ViewSpec
from bench.backbones import create_backbone
from bench.cli import main
from bench.data import cache, streaming
from bench.data.imagefolder import load_imagefolder
from bench.data.streaming import StreamedImages, StreamedViews
from bench.errors import DataError
from probes.features import extract_features


@pytest.fixture(autouse=True)
def _default_budget():
    yield
    streaming.set_cache_budget(None)


def _jpeg_split(root, sizes=((45, 60), (60, 45), (50, 50), (48, 70)), per_class=3):
    """Two classes of full-size-like JPEGs of mixed, non-square sizes (H, W)."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / c / f"{i}.jpg", quality=90)
    return root


def _load(root, cache_dir, budget, **kw):
    streaming.set_cache_budget(budget)
    return load_imagefolder(root, cache_dir=cache_dir, decode_workers=1, **kw)


def test_a_streamed_split_gives_the_cached_rows_fingerprint_and_evaluation_features(tmp_path):
    split = _jpeg_split(tmp_path / "train")
    cached = _load(split, tmp_path / "c1", None, size=40)
    streamed = _load(split, tmp_path / "c2", 0, size=40)
    assert isinstance(cached.images, torch.Tensor) and isinstance(streamed.images, StreamedImages)
    assert not list((tmp_path / "c2").glob("images/*.npy")) and list((tmp_path / "c2").glob("shards/*.npy"))
    assert streamed.images.shape == cached.images.shape and len(streamed) == len(cached)
    assert streamed.fingerprint == cached.fingerprint
    assert torch.equal(streamed.images[:], cached.images)
    assert torch.equal(streamed.images[torch.tensor([5, 0])], cached.images[[5, 0]])
    assert torch.equal(streamed.images[-1], cached.images[-1])
    torch.manual_seed(0)
    enc = create_backbone("resnet18", img_size=32, stem="small")
    kw = dict(img_size=32, crop_pct=0.875, batch_size=4, device="cpu")
    assert torch.equal(extract_features(enc, streamed.images, **kw), extract_features(enc, cached.images, **kw))


def test_the_budget_decides_only_for_a_split_not_cached_yet(tmp_path):
    split = _jpeg_split(tmp_path / "train")
    n_bytes = 6 * 3 * 40 * 40
    assert isinstance(_load(split, tmp_path / "c", n_bytes / 1e9, size=40).images, torch.Tensor)  # fits: cached
    assert isinstance(_load(split, tmp_path / "c", 0, size=40).images, torch.Tensor)  # cached already: kept
    assert isinstance(_load(split, tmp_path / "s", (n_bytes - 1) / 1e9, size=40).images, StreamedImages)
    # without a size: the smallest short side, as the cache decodes it (and the packed entry keeps it)
    first = _load(split, tmp_path / "s2", 0)
    assert first.images.shape[-1] == 45 and _load(split, tmp_path / "s2", 0).images.shape[-1] == 45


def test_training_crops_come_from_the_whole_image_and_replay_by_batch(tmp_path):
    root = tmp_path / "train" / "a"
    root.mkdir(parents=True)
    wide = np.zeros((32, 96, 3), dtype=np.uint8)
    wide[:, :32, 0], wide[:, 32:64, 1], wide[:, 64:, 2] = 255, 255, 255  # red | green | blue
    for i in range(2):
        Image.fromarray(wide).save(root / f"{i}.png")
    data = _load(tmp_path / "train", tmp_path / "c", 0)
    assert data.images[0][0].max() < 40 and data.images[0][1].min() > 200  # the stored row: the green centre only
    spec = ViewSpec(scale=(0.08, 1.0)).with_size(16)
    ds = StreamedViews(data.images, data.labels, [spec, spec], seed=3)
    crops = [ds[torch.tensor([0, 1, 0])] for _ in range(2)]
    assert torch.equal(crops[0][0][0], crops[1][0][0])  # same batch, same seed: the same crops (resume replays)
    assert crops[0][0][0].shape == (3, 3, 16, 16) and len(crops[0][0]) == 2
    seen = torch.cat([ds[torch.tensor([0, 1, i % 2])][0][0] for i in range(30)])
    assert seen[:, 0].amax() > 200 and seen[:, 2].amax() > 200  # red and blue: outside the centre square


def _flip_byte(npy, at):
    raw = bytearray(npy.read_bytes())
    offset = np.load(npy, mmap_mode="r").offset
    raw[offset + at] ^= 0xFF
    npy.write_bytes(bytes(raw))


def test_a_corrupt_packed_byte_is_caught_on_load_or_by_cache_verify(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cache, "SAMPLED_ROWS", 2)
    monkeypatch.setattr(cache, "SAMPLED_CHUNK", 8)
    split = _jpeg_split(tmp_path / "train")
    first = _load(split, tmp_path / "c", 0, size=40).images[:]
    (npy,) = (tmp_path / "c" / "shards").glob("*.npy")
    _flip_byte(npy, 3)  # inside the first sampled chunk: loading sees it, removes the entry and packs again
    with pytest.warns(UserWarning, match="corrupt or incomplete; rebuilding"):
        again = _load(split, tmp_path / "c", 0, size=40)
    assert torch.equal(again.images[:], first)
    assert main(["cache", "verify", "--cache-dir", str(tmp_path / "c")]) == 0
    _flip_byte(npy, 3000)  # outside the sampled chunks: only the full check sees it
    assert main(["cache", "verify", "--cache-dir", str(tmp_path / "c")]) == 1
    assert "sha256 of the .npy differs" in capsys.readouterr().out


def test_a_file_that_is_no_image_is_refused_when_packed_and_a_truncated_one_when_decoded(tmp_path):
    split = _jpeg_split(tmp_path / "train")
    (split / "a" / "9.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot decode image .*9\.jpg"):
        _load(split, tmp_path / "c", 0, size=40)
    (split / "a" / "9.jpg").unlink()
    good = (split / "a" / "0.jpg").read_bytes()
    (split / "a" / "0.jpg").write_bytes(good[:len(good) // 3])  # a valid header, the pixels cut short
    data = _load(split, tmp_path / "c", 0, size=40)
    with pytest.raises(DataError, match=r"cannot decode image .*0\.jpg"):
        next(streaming.iter_batches(data.images, 4))
    spec = ViewSpec().with_size(16)
    message, labels = StreamedViews(data.images, data.labels, [spec], seed=0)[torch.tensor([0, 1])]
    assert labels is None and "cannot decode image" in message and "\n" not in message


@pytest.mark.slow
def test_a_run_on_a_streamed_split_trains_and_probes_end_to_end(tmp_path, cli_args):
    args = [*cli_args(tmp_path), "--cache-budget", "0", "--decode-workers", "2"]
    assert main(["run", "--method", "simclr", "--backbone", "resnet18", "--epochs", "1", "--img-size", "16",
                 "--results", str(tmp_path / "results"), *args]) == 0
    assert list((tmp_path / "cache" / "shards").glob("*.npy")) and not list((tmp_path / "cache").glob("images/*.npy"))
    (record,) = (tmp_path / "results").rglob("*.json")
    text = record.read_text()
    assert '"status": "ok"' in text and '"knn_top1"' in text


def test_a_ddp_rank_above_0_waits_for_rank_0s_packed_split_and_packs_nothing(tmp_path, monkeypatch):
    import threading

    from bench.data import imagefolder
    split = _jpeg_split(tmp_path / "train")
    streaming.set_cache_budget(0)
    packed_by = []
    real = imagefolder._check_one
    monkeypatch.setattr(imagefolder, "_check_one", lambda job: packed_by.append(threading.current_thread()) or real(job))
    load = lambda: load_imagefolder(split, size=40, cache_dir=tmp_path / "c", decode_workers=1)  # noqa: E731
    rank0 = threading.Thread(target=lambda: (threading.Event().wait(0.3), load()))
    monkeypatch.setattr(cache, "launch_rank", lambda: 0 if threading.current_thread() is rank0 else 1)
    rank0.start()
    worker = load()  # this thread plays rank 1: the same decision (stream), then polls for rank 0's entry
    rank0.join()
    assert packed_by and set(packed_by) == {rank0}
    assert isinstance(worker.images, StreamedImages) and torch.equal(worker.images[:], load().images[:])


def test_device_decode_gives_the_worker_paths_crops(tmp_path):
    """The GPU path (bench.data.streaming.EncodedBatch: workers read bytes, torchvision.io.decode_jpeg decodes on
    the device) run here on the CPU: the same crop boxes as the worker path, the same pixels up to the decoders'
    rounding; a PNG among the JPEGs goes to the CPU decoder."""
    split = _jpeg_split(tmp_path / "train")
    Image.open(split / "a" / "1.jpg").save(split / "a" / "1.png")
    (split / "a" / "1.jpg").unlink()
    data = _load(split, tmp_path / "c", 0)
    specs = [ViewSpec(scale=(0.3, 1.0)).with_size(24), ViewSpec(size_frac=0.5).with_size(24)]
    idx = torch.tensor([3, 0, 1, 5])
    on_workers, labels = StreamedViews(data.images, data.labels, specs, seed=7)[idx]
    encoded, labels2 = StreamedViews(data.images, data.labels, specs, seed=7, device_decode=True)[idx]
    assert isinstance(encoded, streaming.EncodedBatch) and torch.equal(labels, labels2)
    on_device = encoded.views(specs, "cpu")
    assert [v.shape for v in on_device] == [v.shape for v in on_workers] == [(4, 3, 24, 24), (4, 3, 12, 12)]
    for a, b in zip(on_device, on_workers):
        assert (a.int() - b.int()).abs().max() <= 2
