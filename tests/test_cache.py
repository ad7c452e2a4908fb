"""The decoded-split cache: loading checks header, size and a sample checksum (never the whole file), `bench cache
verify` checks everything, and a DDP rank > 0 waits for rank 0's entry instead of decoding it again."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.data import cache
from bench.data import imagefolder
from bench.data.imagefolder import load_imagefolder
from bench.errors import DataError


def _split(root, n=10):
    rng = np.random.default_rng(1)
    (root / "c").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "c" / f"{i:02d}.png")
    return root


def _load(tmp_path, **kw):
    return load_imagefolder(tmp_path / "train", size=8, cache_dir=tmp_path / "cache", decode_workers=1, **kw)


def _flip(npy, row):
    """Flip one byte in the middle of ``row`` of the cached array (the file still loads)."""
    arr = np.load(npy, mmap_mode="r")
    at = arr.offset + row * arr[0].nbytes + arr[0].nbytes // 2
    del arr
    raw = bytearray(npy.read_bytes())
    raw[at] ^= 0xFF
    npy.write_bytes(bytes(raw))


@pytest.fixture
def entry(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "SAMPLED_ROWS", 4)
    _split(tmp_path / "train")
    first = _load(tmp_path).images.clone()
    (npy,) = (tmp_path / "cache" / "images").glob("*.npy")
    return first, npy


def test_sampled_rows_are_spread_and_bounded():
    assert cache.sampled_rows(0) == [] and cache.sampled_rows(1) == [0] and cache.sampled_rows(3) == [0, 1, 2]
    rows = cache.sampled_rows(1_281_167)
    assert len(rows) == cache.SAMPLED_ROWS and rows[0] == 0 and rows[-1] == 1_281_166


def test_loading_a_cached_split_never_hashes_the_whole_file(entry, tmp_path, monkeypatch):
    first, npy = entry
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert meta["shape"] == [10, 3, 8, 8] and meta["npy_bytes"] == npy.stat().st_size and len(meta["sample_sha256"]) == 64
    monkeypatch.setattr(cache, "file_sha256", lambda p: pytest.fail(f"hashed all of {p} on load"))
    assert torch.equal(_load(tmp_path).images, first)


def test_a_corrupt_sampled_row_is_detected_on_load_and_rebuilt(entry, tmp_path):
    first, npy = entry
    assert cache.sampled_rows(10) == [0, 3, 6, 9]
    _flip(npy, 3)
    with pytest.warns(UserWarning, match="corrupt"):
        assert torch.equal(_load(tmp_path).images, first)


def test_a_truncated_or_extended_file_is_detected_on_load(entry, tmp_path):
    first, npy = entry
    npy.write_bytes(npy.read_bytes() + b"\0")
    with pytest.warns(UserWarning, match="corrupt"):
        assert torch.equal(_load(tmp_path).images, first)
    npy.write_bytes(npy.read_bytes()[:-5])
    with pytest.warns(UserWarning, match="corrupt"):
        assert torch.equal(_load(tmp_path).images, first)


def test_cache_verify_finds_a_corrupt_byte_anywhere(entry, tmp_path, capsys):
    first, npy = entry
    assert main(["cache", "verify", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "1 of 1 entries whole" in capsys.readouterr().out
    _flip(npy, 4)  # not a sampled row: loading cannot see it, the full check does
    assert main(["cache", "verify", "--cache-dir", str(tmp_path / "cache")]) == 1
    text = capsys.readouterr().out
    assert "corrupt: sha256 of the .npy differs" in text and npy.name in text and "0 of 1 entries whole" in text
    assert npy.exists()  # reported, kept without --remove
    assert main(["cache", "verify", "--cache-dir", str(tmp_path / "cache"), "--remove"]) == 1
    assert not npy.exists() and not npy.with_suffix(".json").exists()
    assert torch.equal(_load(tmp_path).images, first)


def test_an_entry_from_before_sample_checksums_is_checked_in_full_once(entry, tmp_path):
    first, npy = entry
    meta_path = npy.with_suffix(".json")
    old = {k: v for k, v in json.loads(meta_path.read_text()).items() if k not in ("sample_sha256", "shape", "npy_bytes")}
    meta_path.write_text(json.dumps(old))
    assert torch.equal(_load(tmp_path).images, first)
    assert "sample_sha256" in json.loads(meta_path.read_text())
    _flip(npy, 5)  # an old entry is hashed whole: even an unsampled row is caught the first time
    meta_path.write_text(json.dumps(old))
    with pytest.warns(UserWarning, match="corrupt"):
        assert torch.equal(_load(tmp_path).images, first)


def test_a_ddp_rank_above_0_waits_for_rank_0s_entry_and_decodes_nothing(tmp_path, monkeypatch):
    _split(tmp_path / "train")
    decoded_by = []
    real = imagefolder._decode_one
    monkeypatch.setattr(imagefolder, "_decode_one", lambda job: decoded_by.append(threading.current_thread()) or real(job))
    rank0 = threading.Thread(target=lambda: (threading.Event().wait(0.3), _load(tmp_path)))
    monkeypatch.setattr(cache, "launch_rank", lambda: 0 if threading.current_thread() is rank0 else 1)
    rank0.start()
    worker = _load(tmp_path)  # this thread plays rank 1: polls until rank 0's entry is whole
    rank0.join()
    assert decoded_by and set(decoded_by) == {rank0}
    assert torch.equal(worker.images, _load(tmp_path).images) and worker.images.shape == (10, 3, 8, 8)


def test_a_ddp_rank_above_0_gives_up_with_one_line_when_rank_0_writes_nothing(tmp_path, monkeypatch):
    _split(tmp_path / "train")
    monkeypatch.setattr(cache, "launch_rank", lambda: 1)
    monkeypatch.setattr(cache, "WAIT_S", 0.0)
    with pytest.raises(DataError, match="rank 1 waited 0 s for rank 0 to write the cache entry"):
        _load(tmp_path)
