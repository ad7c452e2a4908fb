"""Data layer: embedded default, ImageFolder decoding + cache, fingerprints and clear errors."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import DATASETS, load_split, resolve_data_root
from bench.data.imagefolder import load_imagefolder
from bench.errors import DataError


def _write_jpeg(path: Path, color, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG", quality=95)


def _tree(root: Path, n_per_class=3, classes=("b_cls", "a_cls")) -> Path:
    for ci, cls in enumerate(classes):
        for i in range(n_per_class):
            _write_jpeg(root / "train" / cls / f"img{i}.jpg", (40 * ci + 10 * i, 100, 200))
    return root


def test_embedded_default_ships_and_loads(tmp_path):
    train = load_split("imagenette-mini", "train", cache_dir=tmp_path)
    val = load_split("imagenette-mini", "val", cache_dir=tmp_path)
    assert train.images.shape == (2000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert val.images.shape == (500, 3, 32, 32)
    assert torch.equal(train.labels.bincount(), torch.full((10,), 200))
    assert train.classes == sorted(train.classes) and train.classes[0] == "n01440764"
    assert train.fingerprint != val.fingerprint and len(train.fingerprint) == 64
    assert train.images.float().std() > 20  # real photographs, not blank


def test_decode_once_then_cache_hit_is_identical(tmp_path):
    root = _tree(tmp_path / "ds")
    spec = f"imagefolder:{root}"
    first = load_split(spec, "train", size=16, cache_dir=tmp_path / "cache")
    assert first.images.shape == (6, 3, 16, 16)
    # ImageFolder order: sorted classes -> a_cls is label 0
    assert first.classes == ["a_cls", "b_cls"] and first.labels.tolist() == [0, 0, 0, 1, 1, 1]
    cached = list((tmp_path / "cache" / "images").glob("*.npy"))
    assert len(cached) == 1
    second = load_split(spec, "train", size=16, cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, second.images) and first.fingerprint == second.fingerprint
    # a different size is a different cache entry
    load_split(spec, "train", size=8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "images").glob("*.npy"))) == 2


def test_corrupt_image_cache_is_detected_and_rebuilt(tmp_path):
    root = _tree(tmp_path / "ds")
    spec = f"imagefolder:{root}"
    first = load_split(spec, "train", size=16, cache_dir=tmp_path / "cache").images.clone()
    (npy,) = (tmp_path / "cache" / "images").glob("*.npy")
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF  # one flipped pixel byte: the file still loads, only the checksum can tell
    npy.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = load_split(spec, "train", size=16, cache_dir=tmp_path / "cache")
    assert torch.equal(rebuilt.images, first)
    npy.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="corrupt"):
        assert torch.equal(load_split(spec, "train", size=16, cache_dir=tmp_path / "cache").images, first)


def test_fingerprint_tracks_content(tmp_path):
    root = _tree(tmp_path / "ds")
    fp1 = load_split(f"imagefolder:{root}", "train", size=8, cache_dir=tmp_path / "c").fingerprint
    _write_jpeg(root / "train" / "a_cls" / "img0.jpg", (1, 2, 3))
    data = load_split(f"imagefolder:{root}", "train", size=8, cache_dir=tmp_path / "c")
    assert data.fingerprint != fp1
    expected = hashlib.sha256()
    for cls in ("a_cls", "b_cls"):
        for i in range(3):
            digest = hashlib.sha256((root / "train" / cls / f"img{i}.jpg").read_bytes()).hexdigest()
            expected.update(f"{cls}/img{i}.jpg\t{digest}\n".encode())
    assert data.fingerprint == expected.hexdigest()


def test_corrupt_image_error_names_the_file(tmp_path):
    root = _tree(tmp_path / "ds")
    bad = root / "train" / "b_cls" / "img1.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(DataError, match="img1.jpg"):
        load_split(f"imagefolder:{root}", "train", size=8, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c" / "images").glob("*.npy*"))  # no half-written cache left behind


def test_manifest_mismatch_and_missing_file(tmp_path):
    root = _tree(tmp_path / "ds")
    rows = ["split\tclass\tfile\tsha256"]
    for f in sorted((root / "train").rglob("*.jpg")):
        rows.append(f"train\t{f.parent.name}\t{f.name}\t{hashlib.sha256(f.read_bytes()).hexdigest()}")
    (root / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    load_split(f"imagefolder:{root}", "train", size=8, cache_dir=tmp_path / "c")  # verifies fine
    _write_jpeg(root / "train" / "a_cls" / "img2.jpg", (9, 9, 9))
    with pytest.raises(DataError, match="img2.jpg.*MANIFEST"):
        load_split(f"imagefolder:{root}", "train", size=8, cache_dir=tmp_path / "c")
    (root / "train" / "a_cls" / "img2.jpg").unlink()
    with pytest.raises(DataError, match="missing"):
        load_split(f"imagefolder:{root}", "train", size=8, cache_dir=tmp_path / "c")


def test_mixed_sizes_are_cropped_to_the_smallest_or_to_the_size_given(tmp_path):
    root = _tree(tmp_path / "ds")
    small = load_imagefolder(root / "train", cache_dir=tmp_path / "c").images.shape[-1]
    _write_jpeg(root / "train" / "a_cls" / "zbig.jpg", (0, 0, 0), size=(64, 64))
    assert load_imagefolder(root / "train", cache_dir=tmp_path / "c").images.shape == (7, 3, small, small)
    assert load_imagefolder(root / "train", size=12, cache_dir=tmp_path / "c").images.shape == (7, 3, 12, 12)


@pytest.mark.parametrize("spec,split,match", [
    ("imagenete-mini", "train", "did you mean 'imagenette-mini'"),
    ("imagenette-mini", "test", "no split 'test'"),
    ("imagefolder:/nonexistent/folder", "train", "does not exist"),
])
def test_bad_specs_give_one_line_errors(tmp_path, spec, split, match):
    with pytest.raises(DataError, match=match) as info:
        load_split(spec, split, cache_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_empty_class_folder_is_an_error(tmp_path):
    root = _tree(tmp_path / "ds")
    (root / "train" / "c_empty").mkdir()
    with pytest.raises(DataError, match="c_empty.*no images"):
        load_split(f"imagefolder:{root}", "train", cache_dir=tmp_path / "c")


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    assert resolve_data_root() == tmp_path
    assert resolve_data_root(tmp_path / "..") == tmp_path / ".."
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="--data-root"):
        resolve_data_root()
    assert "imagenette64" in DATASETS and "imagenette-mini" in DATASETS


@pytest.mark.needs_imagenette64
def test_imagenette64_loads(tmp_path):
    val = load_split("imagenette64", "val", cache_dir=tmp_path)
    assert val.images.shape == (3925, 3, 64, 64) and len(val.classes) == 10


def _split(classes, split, labels=None, spec="hf:any"):
    from bench.data import ImageData
    labels = torch.arange(len(classes)) if labels is None else torch.tensor(labels)
    return ImageData(images=torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8), labels=labels, classes=list(classes),
                     fingerprint="f", spec=spec, split=split)


@pytest.mark.parametrize("val_classes, match", [
    (["a", "c"], r"the val split's classes differ from the train split's \(missing from val: b\)"),
    (["a", "b", "c", "d"], r"\(only in val: d\)"),
    (["a", "x", "c"], r"\(missing from val: b; only in val: x\)"),
    (["c", "b", "a"], r"\(in another order\)"),
])
def test_eval_classes_must_be_the_train_classes_whatever_the_source(val_classes, match):
    """BenchData pairs the splits of every data source (image folders, hf, ImageNet, video): label i of the eval
    split must mean class i of the train split, or every later label is shifted and scored as if right."""
    from bench.runner import BenchData
    train = _split(["a", "b", "c"], "train")
    assert BenchData(train, _split(["a", "b", "c"], "val")).eval.classes == train.classes
    with pytest.raises(DataError, match=match):
        BenchData(train, _split(val_classes, "val"))


def test_one_class_is_refused():
    from bench.runner import BenchData
    with pytest.raises(DataError, match=r"has 1 class \(only\) in its train split: probes need at least 2"):
        BenchData(_split(["only"], "train", [0, 0]), _split(["only"], "val", [0]))


def test_a_class_missing_from_a_val_folder_is_refused_when_loading(tmp_path):
    from bench.benchmarks import adhoc_benchmark
    from bench.runner import load_benchmark_data
    root = _tree(tmp_path / "ds", classes=("a_cls", "b_cls", "c_cls"))
    for i in range(2):
        for cls in ("a_cls", "c_cls"):  # b_cls missing: c_cls would get b_cls's label 1
            _write_jpeg(root / "val" / cls / f"v{i}.jpg", (10, 20, 30))
    with pytest.raises(DataError, match=r"missing from val: b_cls"):
        load_benchmark_data(adhoc_benchmark(f"imagefolder:{root}"), cache_dir=tmp_path / "cache")
