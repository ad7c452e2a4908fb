"""Video data: the :class:`ClipData` split every video dataset loads into, and the ``videofolder:PATH`` reader.

``videofolder:PATH`` reads ``PATH/<split>/<class>/<video>`` (mp4, webm, mkv, avi, mov; decoded with PyAV,
the ``video`` extra: ``pip install -e ".[video]"``). Each video gives one clip of ``frames`` frames taken
``stride`` frames apart from the middle of the video (a video shorter than the clip repeats its last
frame); frames are resized (short side, bicubic + antialias) and centre-cropped to ``size`` px. The
split is decoded once into a memory-mapped uint8 (N, T, 3, S, S) ``.npy`` cache keyed by the folder,
the file list (sizes, mtimes), frames, stride and size, with a sha256 checksum (a corrupt cache entry
is rebuilt, never used), exactly like the image cache. The data fingerprint hashes every file's bytes
and the clip sampling (frames, stride, size). A file that cannot be decoded is one ``DataError`` naming it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from bench.data.imagefolder import ImageData, _valid_cache_meta, file_sha256
from bench.errors import DataError
from bench.io import atomic_write_json

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
VIDEO_CACHE_VERSION = 1  # bump when decoding, sampling or the cache format changes


@dataclass
class ClipData(ImageData):
    """A video split: ``images`` holds uint8 clips (N, T, 3, S, S); ``labels`` / ``classes`` are the label
    column the benchmark scores (its headline); ``label_sets`` maps every label column of the dataset
    (e.g. moving-shapes' ``direction`` and ``shape``) to ``(labels (N,), class names)``."""

    label_sets: dict[str, tuple[torch.Tensor, list[str]]] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(self.images.shape[1])

    def label_column(self, name: str) -> tuple[torch.Tensor, list[str]]:
        if name not in self.label_sets:
            raise DataError(f"{self.spec} ({self.split}) has no label column {name!r} "
                            f"(found: {', '.join(self.label_sets) or 'only its class folders'})")
        return self.label_sets[name]


def _require_av():
    try:
        import av
    except ImportError:
        raise DataError("reading videos needs PyAV: pip install 'av>=12' (or pip install -e \".[video]\")") from None
    return av


def clip_indices(n: int, frames: int, stride: int) -> list[int]:
    """Indices of ``frames`` frames ``stride`` apart, centred in a video of ``n`` frames; past the end the
    last frame repeats (videos shorter than the clip)."""
    span = (frames - 1) * stride + 1
    start = max(0, (n - span) // 2)
    return [min(start + i * stride, n - 1) for i in range(frames)]


def resize_center_clip(clip: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> uint8 (T, 3, size, size): bicubic (antialiased) resize of the short side, centre crop."""
    h, w = clip.shape[-2:]
    if (h, w) == (size, size):
        return clip
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(clip.float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, :, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)


def read_clip(path: str | Path, frames: int, stride: int = 1, size: int | None = None) -> torch.Tensor:
    """One clip uint8 (frames, 3, S, S) from a video file (see the module docstring); a DataError naming the
    file if it cannot be decoded."""
    av = _require_av()
    path = Path(path)
    try:
        with av.open(str(path)) as container:  # count frames by demuxing (no decoding)
            if not container.streams.video:
                raise DataError(f"cannot decode video {path}: it has no video stream; fix or remove the file")
            n = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
        if n == 0:
            raise DataError(f"cannot decode video {path}: it has no video frames; fix or remove the file")
        idx = clip_indices(n, frames, stride)
        wanted, got = set(idx), {}
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    got[i] = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                if i >= idx[-1]:
                    break
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any demuxer / decoder failure means a corrupt or unsupported file
        why = getattr(e, "strerror", None) or f"{type(e).__name__}: {e}"  # FFmpeg errors carry a strerror
        raise DataError(f"cannot decode video {path}: {why}; fix or remove the file".splitlines()[0]) from None
    if not got:
        raise DataError(f"cannot decode video {path}: no frame could be decoded; fix or remove the file")
    last = got[max(got)]
    clip = torch.stack([got.get(i, last) for i in idx])  # frames the decoder dropped: repeat the last one
    return resize_center_clip(clip, size) if size else clip


def scan_videofolder(split_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class folders and (relpath, label) pairs in sorted order."""
    if not split_dir.is_dir():
        raise DataError(f"video folder {split_dir} does not exist")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"video folder {split_dir} has no class sub-folders (expected {split_dir}/<class>/<video>)")
    files = []
    for label, cls in enumerate(classes):
        names = sorted(f.name for f in (split_dir / cls).iterdir()
                       if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        if not names:
            raise DataError(f"class folder {split_dir / cls} has no videos ({', '.join(VIDEO_EXTENSIONS)})")
        files += [(f"{cls}/{n}", label) for n in names]
    return classes, files


def _cache_key(split_dir: Path, files, frames: int, stride: int, size: int) -> str:
    h = hashlib.sha256(f"video-v{VIDEO_CACHE_VERSION}\n{split_dir.resolve()}\n{frames}\n{stride}\n{size}\n".encode())
    for rel, label in files:
        st = (split_dir / rel).stat()
        h.update(f"{rel}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _decode_all(split_dir: Path, files, frames: int, stride: int, size: int, out_path: Path, progress: bool) -> str:
    """Decode every video's clip into a new .npy at out_path; returns the fingerprint."""
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), frames, 3, size, size))
    fp = hashlib.sha256(f"frames={frames}\tstride={stride}\tsize={size}\n".encode())
    iterator = files
    if progress:
        from rich.progress import track
        iterator = track(files, description=f"decoding {split_dir}", transient=True)
    try:
        for i, (rel, _) in enumerate(iterator):
            path = split_dir / rel
            try:
                digest = file_sha256(path)
            except OSError as e:
                raise DataError(f"cannot read video {path}: {e.strerror or e}") from None
            arr[i] = read_clip(path, frames, stride, size).numpy()
            fp.update(f"{rel}\t{digest}\n".encode())
        arr.flush()
        del arr
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return fp.hexdigest()


def load_videofolder(split_dir: str | Path, *, frames: int, stride: int = 1, size: int, cache_dir: str | Path,
                     spec: str = "", split: str = "", progress: bool = False) -> ClipData:
    """Decode (once) and memory-map ``split_dir/<class>/<video>`` as uint8 clips (N, frames, 3, size, size)."""
    if frames <= 0 or stride <= 0 or size <= 0:
        raise DataError(f"video clips need frames, stride and size > 0 (got {frames}, {stride}, {size})")
    split_dir = Path(split_dir)
    classes, files = scan_videofolder(split_dir)
    key = _cache_key(split_dir, files, frames, stride, size)
    cache = Path(cache_dir) / "videos"
    npy, meta_path = cache / f"{key}.npy", cache / f"{key}.json"
    meta = _valid_cache_meta(npy, meta_path, len(files))
    if meta is None:
        _require_av()
        cache.mkdir(parents=True, exist_ok=True)
        try:
            fingerprint = _decode_all(split_dir, files, frames, stride, size, npy, progress)
        except OSError as e:
            raise DataError(f"cannot write the decoded-video cache {npy}: {e.strerror or e}; "
                            f"free some space or pass --cache-dir") from None
        meta = {"fingerprint": fingerprint, "root": str(split_dir.resolve()), "n": len(files), "classes": classes,
                "frames": frames, "stride": stride, "size": size, "npy_sha256": file_sha256(npy)}
        atomic_write_json(meta_path, meta)
    arr = np.load(npy, mmap_mode="c")
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return ClipData(images=torch.from_numpy(arr), labels=labels, classes=classes, fingerprint=meta["fingerprint"],
                    spec=spec or f"videofolder:{split_dir.parent}", split=split or split_dir.name,
                    label_sets={"class": (labels, classes)})
