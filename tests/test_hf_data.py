"""Hugging Face datasets (``hf:`` specs): loaded offline from folders written here, the same uint8 cache
as the ImageFolder loader, column auto-detection, and one clear error (never a network call) for a
dataset that is not on this machine."""

from __future__ import annotations

import socket

import pytest
import torch
from PIL import Image as PILImage

from bench.data import load_split
from bench.errors import DataError

datasets = pytest.importorskip("datasets")
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value  # noqa: E402

COLORS = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]


def _split(n_per_class: int, size=(10, 8)) -> Dataset:
    rows = [(PILImage.new("RGB", size, COLORS[c]), c) for c in range(3) for _ in range(n_per_class)]
    return Dataset.from_dict({"img": [r[0] for r in rows], "label": [r[1] for r in rows]},
                             features=Features({"img": Image(), "label": ClassLabel(names=["red", "green", "blue"])}))


@pytest.fixture
def saved(tmp_path):
    """A DatasetDict with train (4 per class) and validation (2 per class) splits, saved to disk."""
    path = tmp_path / "colors"
    DatasetDict(train=_split(4), validation=_split(2)).save_to_disk(str(path))
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""
    calls = []

    def refuse(*args, **kw):
        calls.append(args)
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


def test_saved_datasetdict_loads_offline_into_the_uint8_cache(saved, tmp_path, no_network):
    train = load_split(f"hf:{saved}", "train", cache_dir=tmp_path / "cache")
    val = load_split(f"hf:{saved}", "val", cache_dir=tmp_path / "cache")  # "val" falls back to "validation"
    assert train.classes == ["red", "green", "blue"] and val.classes == train.classes
    assert train.images.shape == (12, 3, 8, 8) and train.images.dtype == torch.uint8  # short side, centre crop
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and val.labels.bincount().tolist() == [2, 2, 2]
    assert val.split == "validation" and len(train.fingerprint) == 64 and train.fingerprint != val.fingerprint
    for c, color in enumerate(COLORS):  # PNG-encoded solid colours come back exactly
        assert train.images[train.labels == c].flatten(1).sub(torch.tensor(color).repeat_interleave(64)).abs().max() == 0
    again = load_split(f"hf:{saved}", "train", cache_dir=tmp_path / "cache")
    assert torch.equal(again.images, train.images) and again.fingerprint == train.fingerprint
    assert len(list((tmp_path / "cache" / "images").glob("*.npy"))) == 2  # decoded once per split
    resized = load_split(f"hf:{saved}?size=4", "train", cache_dir=tmp_path / "cache")
    assert resized.images.shape == (12, 3, 4, 4) and resized.fingerprint == train.fingerprint
    assert no_network == []


def test_columns_are_configurable_and_labels_may_be_strings(tmp_path, no_network):
    base = _split(2)
    ds = Dataset.from_dict({"thumb": base["img"], "photo": base["img"], "kind": ["b", "a", "c", "a", "b", "c"]},
                           features=Features({"thumb": Image(), "photo": Image(), "kind": Value("string")}))
    ds.save_to_disk(str(tmp_path / "single"))
    with pytest.raises(DataError, match=r"no label column found among thumb, photo, kind; name it with \?label=COLUMN"):
        load_split(f"hf:{tmp_path / 'single'}", "train", cache_dir=tmp_path / "c")
    data = load_split(f"hf:{tmp_path / 'single'}?image=photo&label=kind", "train", cache_dir=tmp_path / "c")
    assert data.classes == ["a", "b", "c"] and data.labels.tolist() == [1, 0, 2, 0, 1, 2]
    with pytest.raises(DataError, match=r"single split \(used as train\); it has no 'val' split"):
        load_split(f"hf:{tmp_path / 'single'}?label=kind", "val", cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match=r"column 'kind' is Value, not an Image feature"):
        load_split(f"hf:{tmp_path / 'single'}?image=kind&label=kind", "train", cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match=r"bad option 'colour=red'"):
        load_split(f"hf:{tmp_path / 'single'}?colour=red", "train", cache_dir=tmp_path / "c")


def test_mixed_image_sizes_need_a_size(tmp_path):
    ds = DatasetDict(train=Dataset.from_dict(
        {"img": [PILImage.new("RGB", (10, 8)), PILImage.new("RGB", (12, 12))], "label": [0, 1]},
        features=Features({"img": Image(), "label": ClassLabel(names=["a", "b"])})))
    ds.save_to_disk(str(tmp_path / "mixed"))
    with pytest.raises(DataError, match=r"is 12x12 but the first image is 10x8; add \?size=N"):
        load_split(f"hf:{tmp_path / 'mixed'}", "train", cache_dir=tmp_path / "c")
    assert load_split(f"hf:{tmp_path / 'mixed'}?size=6", "train", cache_dir=tmp_path / "c").images.shape == (2, 3, 6, 6)


def test_a_dataset_that_is_not_local_is_one_clear_error_without_network(tmp_path, no_network):
    with pytest.raises(DataError) as e:
        load_split("hf:nobody-has/this-dataset-xyz:cfg", "train", cache_dir=tmp_path)
    msg = str(e.value)
    assert "'nobody-has/this-dataset-xyz' config 'cfg' is not available offline" in msg and "never downloads" in msg
    assert "save_to_disk(DIR)" in msg and "\n" not in msg
    with pytest.raises(DataError, match=r"folder .*missing does not exist"):
        load_split(f"hf:{tmp_path / 'missing'}", "train", cache_dir=tmp_path)
    assert no_network == []


def test_named_dataset_is_loaded_with_the_hub_forced_offline(saved, tmp_path, monkeypatch, no_network):
    import datasets.config as dc
    import huggingface_hub.constants as hc
    calls = []

    def fake_load_dataset(name, config=None, **kw):  # stands in for a dataset found in the local cache
        calls.append((name, config, dc.HF_HUB_OFFLINE, hc.HF_HUB_OFFLINE))
        return datasets.load_from_disk(str(saved))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    before = dc.HF_HUB_OFFLINE, hc.HF_HUB_OFFLINE
    data = load_split("hf:someone/colors:default?size=4", "train", cache_dir=tmp_path)
    assert calls == [("someone/colors", "default", True, True)] and data.images.shape == (12, 3, 4, 4)
    assert (dc.HF_HUB_OFFLINE, hc.HF_HUB_OFFLINE) == before  # restored afterwards


def test_benchmark_protocol_runs_on_an_hf_dataset(saved):
    from bench.benchmarks import adhoc_benchmark
    b = adhoc_benchmark(f"hf:{saved}", base="imagenette-mini-v1")
    assert b.id == "custom-colors-v1" and b.data == f"hf:{saved}"


def test_unlabelled_split_is_refused(tmp_path):
    hidden = Dataset.from_dict({"img": [PILImage.new("RGB", (8, 8))] * 2, "label": [-1, -1]},
                               features=Features({"img": Image(), "label": ClassLabel(names=["a", "b"])}))
    DatasetDict(train=_split(1), test=hidden).save_to_disk(str(tmp_path / "hidden"))
    with pytest.raises(DataError, match=r"split 'test' has unlabelled rows"):
        load_split(f"hf:{tmp_path / 'hidden'}", "val", cache_dir=tmp_path / "c")
