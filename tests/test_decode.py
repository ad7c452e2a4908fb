"""Image decoding: high bit depths are scaled to 8 bits (never clipped to white), float images outside [0, 1] are
refused by name, and a folder of mixed sizes is resized to its smallest short side."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.data.decode import decode_image
from bench.data.imagefolder import load_imagefolder
from bench.errors import DataError


def _decode(path):
    return decode_image(path, path.read_bytes())


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    img = _decode(tmp_path / "g16.png")
    assert img.shape == (3, 64, 64) and str(img.dtype) == "torch.uint8"
    expected = np.round(ramp / 65535 * 255).astype(np.uint8)
    assert np.array_equal(img[0].numpy(), expected) and np.array_equal(img[0], img[2])
    assert (img == 255).float().mean() < 0.01  # clipping made 99 % of the pixels 255


def test_float_tiff_in_unit_range_is_scaled_and_others_are_refused(tmp_path):
    x = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(x, mode="F").save(tmp_path / "f.tif")
    img = _decode(tmp_path / "f.tif")
    assert np.array_equal(img[1].numpy(), np.round(x.astype(np.float64) * 255).astype(np.uint8))
    Image.fromarray(x * 1000, mode="F").save(tmp_path / "big.tif")
    with pytest.raises(DataError, match=r"big.tif: float pixels outside \[0, 1\]"):
        _decode(tmp_path / "big.tif")


def test_mixed_sizes_are_resized_to_the_smallest_short_side(tmp_path):
    for cls, (w, h) in (("a", (40, 30)), ("b", (64, 64)), ("c", (50, 80))):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(tmp_path / "train" / cls / "0.png")
    data = load_imagefolder(tmp_path / "train", cache_dir=tmp_path / "cache")
    assert tuple(data.images.shape) == (3, 3, 30, 30) and int(data.images.float().mean().round()) == 100


def _photo_tree(root, classes=3, per_class=5, size=(120, 90)):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.jpg")
    return root


def test_parallel_decode_gives_the_same_rows_and_fingerprint_as_one_process(tmp_path):
    split = _photo_tree(tmp_path / "train")
    one = load_imagefolder(split, size=24, cache_dir=tmp_path / "c1", decode_workers=1)
    two = load_imagefolder(split, size=24, cache_dir=tmp_path / "c2", decode_workers=2)
    assert one.images.shape == (15, 3, 24, 24) and one.images.float().std() > 10
    assert np.array_equal(one.images.numpy(), two.images.numpy()) and one.fingerprint == two.fingerprint
    assert one.labels.tolist() == two.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_a_corrupt_file_in_a_worker_process_is_one_data_error_naming_it(tmp_path):
    split = _photo_tree(tmp_path / "train")
    (split / "c1" / "3.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"c1/3.jpg: not a readable image file") as info:
        load_imagefolder(split, size=24, cache_dir=tmp_path / "c", decode_workers=2)
    assert "\n" not in str(info.value) and not list((tmp_path / "c" / "images").glob("*.npy*"))
