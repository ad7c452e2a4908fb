"""The decoded-split cache shared by the file-backed loaders (image folders, ImageNet, ``hf:``, video folders).

A split is decoded once into a uint8 ``.npy`` under ``CACHE_DIR/images`` (videos: ``CACHE_DIR/videos``; the packed
file bytes of a streamed split, :mod:`bench.data.streaming`: a 1-D one under ``CACHE_DIR/shards``) named
by a key of what it was decoded from. The array is written to a temporary file beside it and moved into place
only when complete; a ``.json`` beside it holds the data fingerprint, the array's shape and byte size, the sha256
of the whole ``.npy`` (computed once, when it is written) and a *sample checksum*: the sha256 of the header and
of :data:`SAMPLED_ROWS` rows spread evenly over the array, first and last included. Loading an entry costs the
same whatever its size: it checks the header, the file size and the sample checksum, then memory-maps the
``.npy`` (copy-on-write); an entry that fails is removed and rebuilt, never used. ``bench cache verify``
(:func:`verify_cache`) does the full check of every entry. Under DDP / torchrun / srun only rank 0 decodes; the
other ranks wait for its entry, then memory-map the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.distributed import launch_rank
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


def progress_iter(items, description: str, progress: bool, total: int | None = None, unit: str = "img"):
    """``items``, under a transient rich progress bar with the rate (``unit``/s) when ``progress`` is set and
    stdout is a terminal; plain ``items`` otherwise (no bars in logs and pipes)."""
    from bench.console import is_terminal
    if not progress or not is_terminal():
        return items
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else f"- {unit}/s")

    def run():
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                      TimeRemainingColumn(), transient=True) as bar:
            yield from bar.track(items, total=total, description=description)
    return run()


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


#: rows of a cached array hashed into its sample checksum (spread evenly, first and last included)
SAMPLED_ROWS = 32
#: bytes hashed at each sampled row of a 1-D entry (the packed file bytes of a streamed split)
SAMPLED_CHUNK = 65536
#: how long a DDP rank > 0 waits for rank 0 to write a cache entry (decoding ImageNet-1k takes a while)
WAIT_S = 12 * 3600.0


def _layout(npy: Path) -> tuple[np.memmap, int]:
    """The array (read-only memory map: only its header is read) and the byte size its header implies."""
    arr = np.load(npy, mmap_mode="r")
    return arr, arr.offset + arr.nbytes


def sampled_rows(n: int) -> list[int]:
    """The rows of an n-row array that its sample checksum covers: :data:`SAMPLED_ROWS` spread evenly, first and
    last included (all of them when n is smaller)."""
    k = min(n, SAMPLED_ROWS)
    return [0] if k == 1 else sorted({(i * (n - 1)) // (k - 1) for i in range(k)}) if k else []


def sample_sha256(npy: Path) -> str:
    """The sample checksum: sha256 of the shape, dtype and :data:`SAMPLED_ROWS` rows spread evenly over the
    array. Reads a fixed number of rows, whatever the array's length."""
    arr, _ = _layout(npy)
    h = hashlib.sha256(f"{arr.dtype.str}{tuple(arr.shape)}\n".encode())
    flat = arr.ndim == 1  # packed bytes (bench.data.streaming): a chunk of SAMPLED_CHUNK bytes at each sampled row
    for i in sampled_rows(len(arr)):
        h.update(np.ascontiguousarray(arr[i:i + SAMPLED_CHUNK] if flat else arr[i]).tobytes())
    return h.hexdigest()


def entry_meta(npy: Path, fingerprint: str, info: dict) -> dict:
    """The metadata of a freshly written ``.npy``: fingerprint, ``info``, shape, size, whole and sample checksums."""
    arr, size = _layout(npy)
    return {"fingerprint": fingerprint, **info, "shape": list(arr.shape), "npy_bytes": size,
            "npy_sha256": file_sha256(npy), "sample_sha256": sample_sha256(npy)}


def _check(npy: Path, meta: dict, n: int, full: bool = False) -> str | None:
    """Why the entry is not whole (None: it is): rows, header shape, file size, sample (or ``full``) checksum."""
    if meta.get("n") != n:
        return f"holds {meta.get('n')} rows, expected {n}"
    try:
        arr, size = _layout(npy)
    except (OSError, ValueError) as e:
        return f"unreadable .npy ({e})"
    if list(arr.shape) != meta.get("shape", list(arr.shape)) or len(arr) != n:
        return f"header shape {tuple(arr.shape)} differs from the recorded {meta.get('shape')}"
    if npy.stat().st_size != size or meta.get("npy_bytes", size) != size:
        return f"{npy.stat().st_size} bytes, expected {meta.get('npy_bytes', size)}"
    if full or "sample_sha256" not in meta:  # entries written before sample checksums: the whole file
        return None if file_sha256(npy) == meta.get("npy_sha256") else "sha256 of the .npy differs"
    return None if sample_sha256(npy) == meta["sample_sha256"] else "sample checksum differs"


def read_meta(meta_path: Path) -> dict | None:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def valid_cache_meta(npy: Path, meta_path: Path, n: int, remove: bool = True) -> dict | None:
    """The cache entry's metadata if the entry is whole (header, size and sample checksum match, see the module
    docstring); else None, and (``remove``) a corrupt entry is removed so that it is rebuilt, never used."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    meta = read_meta(meta_path)
    if meta is not None and _check(npy, meta, n) is None:
        if "sample_sha256" not in meta:  # checked in full once: record the sample checksum for next time
            meta["sample_sha256"] = sample_sha256(npy)
            atomic_write_json(meta_path, meta)
        return meta
    if remove:
        # stacklevel 4: past load_cached and the loader, at the loader's caller
        warnings.warn(f"image cache {npy} is corrupt or incomplete; rebuilding it", stacklevel=4)
        npy.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    return None


def cached_meta(cache_dir: str | Path, what: str, key: str, n: int) -> dict | None:
    """The metadata of entry ``key`` under ``cache_dir/<what>s`` if it is whole (O(1), as on load), else None; a
    corrupt entry is removed here by rank 0 only (never by a DDP rank > 0, which waits for rank 0's)."""
    cache = Path(cache_dir) / f"{what}s"
    return valid_cache_meta(cache / f"{key}.npy", cache / f"{key}.json", n, remove=launch_rank() == 0)


def _wait_for_entry(npy: Path, meta_path: Path, n: int) -> dict:
    """On a DDP rank > 0: the entry rank 0 writes, once it is whole (polled; never built or removed here)."""
    deadline = time.monotonic() + WAIT_S
    while (meta := valid_cache_meta(npy, meta_path, n, remove=False)) is None:
        if time.monotonic() > deadline:
            raise DataError(f"rank {launch_rank()} waited {WAIT_S:.0f} s for rank 0 to write the cache entry {npy}; "
                            f"did rank 0 fail? (decode the data once in a single process, then launch again)")
        time.sleep(1.0)
    return meta


def load_cached(cache_dir: str | Path, what: str, key: str, info: dict,
                decode: Callable[[Path], str], checked: dict | None = None) -> tuple[torch.Tensor, dict]:
    """The memory-mapped array of entry ``key`` under ``cache_dir/<what>s`` (``what``: ``image`` or ``video``)
    and its metadata. A missing or corrupt entry is rebuilt first: ``decode(npy_path)`` writes the array (see
    :func:`write_npy`) and returns the data fingerprint, and the metadata (:func:`entry_meta`) is written beside
    it; ``info["n"]`` is the number of rows. A DDP rank > 0 waits for rank 0's entry instead of decoding.
    ``checked``: the metadata :func:`cached_meta` just found whole for this entry (not checked a second time)."""
    cache = Path(cache_dir) / f"{what}s"
    npy, meta_path = cache / f"{key}.npy", cache / f"{key}.json"
    if checked is not None:
        return _loaded(npy, checked)
    if launch_rank() != 0:
        return _loaded(npy, _wait_for_entry(npy, meta_path, info["n"]))
    meta = valid_cache_meta(npy, meta_path, info["n"])
    if meta is None:
        cache.mkdir(parents=True, exist_ok=True)
        try:
            fingerprint = decode(npy)
        except OSError as e:
            raise DataError(f"cannot write the decoded-{what} cache {npy}: {e.strerror or e}; "
                            f"free some space or pass --cache-dir") from None
        meta = entry_meta(npy, fingerprint, info)
        atomic_write_json(meta_path, meta)
    return _loaded(npy, meta)


def _loaded(npy: Path, meta: dict) -> tuple[torch.Tensor, dict]:
    return torch.from_numpy(np.load(npy, mmap_mode="c")), meta


def verify_cache(cache_dir: str | Path) -> list[tuple[Path, str | None]]:
    """Every entry under ``cache_dir`` (images, videos and the packed bytes of streamed splits) with why it is not whole, None if it is: the full
    check (rows, header, size and the sha256 of the whole ``.npy``). A ``.npy`` without metadata is incomplete."""
    root = Path(cache_dir)
    if not root.is_dir():
        raise DataError(f"cache folder {root} does not exist (pass --cache-dir)")
    found = []
    for sub in ("images", "videos", "shards"):
        for npy in sorted((root / sub).glob("*.npy")):
            meta = read_meta(npy.with_suffix(".json"))
            why = "no readable metadata (.json) beside it" if meta is None else _check(npy, meta, meta.get("n"), full=True)
            found.append((npy, why))
    return found
