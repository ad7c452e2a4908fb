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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from bench.data.cache import files_cache_key, load_cached, progress_iter, write_npy
from bench.data.imagefolder import ImageData, scan_class_folders
from bench.errors import DataError
from bench.io import file_sha256

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
    return scan_class_folders(split_dir, VIDEO_EXTENSIONS, "video")


def _cache_key(split_dir: Path, files, frames: int, stride: int, size: int) -> str:
    return files_cache_key(f"video-v{VIDEO_CACHE_VERSION}\n{split_dir.resolve()}\n{frames}\n{stride}\n{size}\n",
                           split_dir, files)


def _decode_all(split_dir: Path, files, frames: int, stride: int, size: int, out_path: Path, progress: bool) -> str:
    """Decode every video's clip into a new .npy at out_path; returns the fingerprint."""
    _require_av()

    def fill(arr: np.ndarray) -> str:
        fp = hashlib.sha256(f"frames={frames}\tstride={stride}\tsize={size}\n".encode())
        for i, (rel, _) in enumerate(progress_iter(files, f"decoding {split_dir}", progress)):
            path = split_dir / rel
            try:
                digest = file_sha256(path)
            except OSError as e:
                raise DataError(f"cannot read video {path}: {e.strerror or e}") from None
            arr[i] = read_clip(path, frames, stride, size).numpy()
            fp.update(f"{rel}\t{digest}\n".encode())
        return fp.hexdigest()

    return write_npy(out_path, (len(files), frames, 3, size, size), fill)


def load_videofolder(split_dir: str | Path, *, frames: int, stride: int = 1, size: int, cache_dir: str | Path,
                     spec: str = "", split: str = "", progress: bool = False) -> ClipData:
    """Decode (once) and memory-map ``split_dir/<class>/<video>`` as uint8 clips (N, frames, 3, size, size)."""
    if frames <= 0 or stride <= 0 or size <= 0:
        raise DataError(f"video clips need frames, stride and size > 0 (got {frames}, {stride}, {size})")
    split_dir = Path(split_dir)
    classes, files = scan_videofolder(split_dir)
    images, meta = load_cached(
        cache_dir, "video", _cache_key(split_dir, files, frames, stride, size),
        {"root": str(split_dir.resolve()), "n": len(files), "classes": classes,
         "frames": frames, "stride": stride, "size": size},
        lambda npy: _decode_all(split_dir, files, frames, stride, size, npy, progress))
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return ClipData(images=images, labels=labels, classes=classes, fingerprint=meta["fingerprint"],
                    spec=spec or f"videofolder:{split_dir.parent}", split=split or split_dir.name,
                    label_sets={"class": (labels, classes)})
