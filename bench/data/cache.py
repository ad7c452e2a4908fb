"""The decoded-split cache shared by the file-backed loaders (image folders, ImageNet, ``hf:``, video folders).

A split is decoded once into a uint8 ``.npy`` under ``CACHE_DIR/images`` (videos: ``CACHE_DIR/videos``) named
by a key of what it was decoded from. The array is written to a temporary file beside it and moved into place
only when complete; a ``.json`` beside it holds the data fingerprint and the sha256 of the ``.npy``, and an
entry whose checksum does not match is removed and rebuilt, never used. Later runs memory-map the ``.npy``
(copy-on-write) in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from bench.errors import DataError
from bench.io import atomic_write_json, file_sha256


def files_cache_key(header: str, split_dir: Path, files: list[tuple[str, int]]) -> str:
    """A cache key: sha256 over ``header`` and a ``relpath<TAB>label<TAB>bytes<TAB>mtime_ns`` line per file of
    ``split_dir`` (so an edited, added or removed file gives a new entry), cut to 24 hex digits."""
    h = hashlib.sha256(header.encode())
    for rel, label in files:
        st = (split_dir / rel).stat()
        h.update(f"{rel}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def progress_iter(items: Iterable, description: str, progress: bool, total: int | None = None) -> Iterable:
    """``items``, under a transient rich progress bar when ``progress`` is set."""
    if not progress:
        return items
    from rich.progress import track
    return track(items, total=total, description=description, transient=True)


def write_npy(out_path: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], str]) -> str:
    """Create a uint8 ``.npy`` of ``shape`` beside ``out_path``, let ``fill(array)`` write every row and return
    the data fingerprint, then move the finished file onto ``out_path``; a failure leaves no file behind."""
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    try:
        fingerprint = fill(arr)
        arr.flush()
        del arr
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return fingerprint


def valid_cache_meta(npy: Path, meta_path: Path, n: int) -> dict | None:
    """The cache entry's metadata if the entry is whole (sha256 of the .npy matches); else None, and a
    corrupt entry is removed so that it is rebuilt, never used."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("n") == n and meta.get("npy_sha256") == file_sha256(npy):
            return meta
    except (OSError, ValueError):
        pass
    # stacklevel 4: past load_cached and the loader, at the loader's caller
    warnings.warn(f"image cache {npy} is corrupt or incomplete; rebuilding it", stacklevel=4)
    npy.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    return None


def load_cached(cache_dir: str | Path, what: str, key: str, info: dict,
                decode: Callable[[Path], str]) -> tuple[torch.Tensor, dict]:
    """The memory-mapped array of entry ``key`` under ``cache_dir/<what>s`` (``what``: ``image`` or ``video``)
    and its metadata. A missing or corrupt entry is rebuilt first: ``decode(npy_path)`` writes the array (see
    :func:`write_npy`) and returns the data fingerprint, and the metadata ``{"fingerprint", **info,
    "npy_sha256"}`` is written beside it; ``info["n"]`` is the number of rows."""
    cache = Path(cache_dir) / f"{what}s"
    npy, meta_path = cache / f"{key}.npy", cache / f"{key}.json"
    meta = valid_cache_meta(npy, meta_path, info["n"])
    if meta is None:
        cache.mkdir(parents=True, exist_ok=True)
        try:
            fingerprint = decode(npy)
        except OSError as e:
            raise DataError(f"cannot write the decoded-{what} cache {npy}: {e.strerror or e}; "
                            f"free some space or pass --cache-dir") from None
        meta = {"fingerprint": fingerprint, **info, "npy_sha256": file_sha256(npy)}
        atomic_write_json(meta_path, meta)
    return torch.from_numpy(np.load(npy, mmap_mode="c")), meta
