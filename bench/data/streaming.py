"""The streaming path: a split too large for the cache budget is kept as its JPEG bytes and decoded per batch.

A decoded split costs N x 3 x S x S bytes (ImageNet-1k at 256 px: ~250 GB). When that exceeds the cache budget
(``--cache-budget GB``, default :data:`DEFAULT_BUDGET_GB`; :func:`set_cache_budget`), the loaders of image folders
and ImageNet pack the files' bytes, in file order, into one *indexed byte file*: a 1-D uint8 ``.npy`` under
``CACHE_DIR/shards`` (the same cache entries as decoded splits: written once, sample checksum on load, ``bench
cache verify``, rank 0 writes under DDP), its row offsets being the running sum of the file sizes, which the
entry's key pins (it hashes every file's size and mtime). The data fingerprint is computed from the same bytes as
on the cached path, so a benchmark's pinned fingerprint holds either way.

:class:`StreamedImages` stands where a cached split's uint8 (N, 3, S, S) tensor does: indexing it decodes those
rows exactly as the cache would have stored them (same decoder, same resize + centre crop), so evaluation features
are identical on both paths. Training reads it through :class:`StreamedViews`: DataLoader workers decode each
image at full size and take every view's RandomResizedCrop from the *full* image (torchvision), seeded by the
batch, then the trainer applies the rest of each view's augmentation batched on the device. On a GPU the workers
only read the bytes and the trainer decodes the batch there (:class:`EncodedBatch`: ``torchvision.io.decode_jpeg``
on the device, nvJPEG), then crops it the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from bench.data.decode import decode_image, resize_center
from bench.errors import ConfigError, DataError

__all__ = ["DEFAULT_BUDGET_GB", "EncodedBatch", "StreamedImages", "StreamedViews", "cache_budget", "iter_batches",
           "set_cache_budget", "view_crops"]

#: the default cache budget: splits whose decoded array is larger are streamed
DEFAULT_BUDGET_GB = 32.0

_budget: float | None = None


def set_cache_budget(gb: float | None) -> None:
    """Fix the cache budget for this process, in GB (10^9 bytes; None: :data:`DEFAULT_BUDGET_GB`; 0 streams every
    image split that is not cached yet)."""
    global _budget
    if gb is not None and not gb >= 0:
        raise ConfigError(f"--cache-budget must be a size in GB, 0 or more (got {gb})")
    _budget = gb


def cache_budget() -> float:
    """The cache budget in bytes."""
    return (DEFAULT_BUDGET_GB if _budget is None else _budget) * 1e9


class StreamedImages:
    """A split kept as encoded bytes: behaves as the uint8 (N, 3, side, side) tensor the cache would hold
    (``len``, ``shape``, ``ndim``, ``dtype``; an int, slice, list or index tensor gives the decoded rows)."""

    dtype = torch.uint8
    ndim = 4

    def __init__(self, packed: torch.Tensor, sizes: Sequence[int], paths: Sequence[Path], side: int):
        self.packed, self.paths, self.side = packed, list(paths), side
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])
        if self.offsets[-1] != len(packed):
            raise ValueError(f"packed bytes hold {len(packed)} bytes, the file sizes sum to {self.offsets[-1]}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.side, self.side))

    def encoded(self, i: int) -> bytes:
        """The file bytes of row ``i``."""
        return self.packed[int(self.offsets[i]):int(self.offsets[i + 1])].numpy().tobytes()

    def full(self, i: int) -> torch.Tensor:
        """Row ``i`` decoded at its full size: uint8 (3, H, W)."""
        return decode_image(self.paths[i], self.encoded(i))

    def row(self, i: int) -> torch.Tensor:
        """Row ``i`` as the cache stores it: uint8 (3, side, side) (short side resized, centre crop)."""
        return resize_center(self.full(i), self.side)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)) or (torch.is_tensor(idx) and idx.ndim == 0):
            i = int(idx)
            if not -len(self) <= i < len(self):
                raise IndexError(f"row {i} of a split of {len(self)}")
            return self.row(i % len(self))
        rows = range(len(self))[idx] if isinstance(idx, slice) else torch.as_tensor(idx).tolist()
        if not rows:
            return torch.empty((0, 3, self.side, self.side), dtype=torch.uint8)
        return torch.stack([self.row(i) for i in rows])


class _Slices(torch.utils.data.Dataset):
    def __init__(self, images: StreamedImages, batch_size: int):
        self.images, self.batch_size = images, batch_size

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, b: int) -> tuple[bool, torch.Tensor | str]:
        from bench.threads import one_cpu_thread
        try:
            with one_cpu_thread():
                return True, self.images[b * self.batch_size:(b + 1) * self.batch_size]
        except DataError as e:  # passed on as a value: DataLoader would wrap it in a multi-line traceback
            return False, str(e)


def iter_batches(images, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive batches of rows of a split, in order: slices of a tensor, or for :class:`StreamedImages`
    batches decoded by DataLoader worker processes (:func:`bench.data.parallel.decode_workers`)."""
    if not isinstance(images, StreamedImages):
        for i in range(0, len(images), batch_size):
            yield images[i:i + batch_size]
        return
    from bench.data.parallel import decode_workers
    workers = min(decode_workers(), -(-len(images) // batch_size))
    for ok, batch in torch.utils.data.DataLoader(_Slices(images, batch_size), batch_size=None, shuffle=False,
                                                 num_workers=workers if workers > 1 else 0):
        if not ok:
            raise DataError(batch)
        yield batch


def batch_seed(seed: int, idx: torch.Tensor) -> int:
    """The crop seed of one training batch: the run's seed and the batch's rows (a resumed run replays it)."""
    h = hashlib.sha256(f"{seed}:".encode() + idx.to(torch.int64).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little") % (2**63)


def view_crops(image: torch.Tensor, specs: Sequence) -> list[torch.Tensor]:
    """One RandomResizedCrop per view spec (its ``scale``, ``ratio`` and ``size``), each taken from the whole
    uint8 (3, H, W) image (torchvision's sampling, from the global torch RNG) and resized to ``size`` x ``size``."""
    from torchvision.transforms import RandomResizedCrop
    from torchvision.transforms.v2 import functional as TF
    out = []
    for spec in specs:
        top, left, h, w = RandomResizedCrop.get_params(image, list(spec.scale), list(spec.ratio))
        out.append(TF.resized_crop(image, top, left, h, w, [spec.size, spec.size], antialias=True))
    return out


def batch_views(images, specs: Sequence, seed: int) -> list[torch.Tensor]:
    """One uint8 (B, 3, s, s) batch per view spec from an iterable of full uint8 (3, H, W) images: their
    :func:`view_crops`, drawn in image order after seeding the CPU RNG with ``seed`` (restored afterwards), so the
    worker path and the device path draw the same boxes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        crops = [view_crops(img, specs) for img in images]
    return [torch.stack([c[v] for c in crops]) for v in range(len(specs))]


JPEG_MAGIC = b"\xff\xd8\xff"


class EncodedBatch:
    """One training batch still encoded, to be decoded on the training device (:meth:`views`): the files' bytes
    (uint8 CPU tensors), their paths (for errors) and the batch's crop seed. Lightning leaves it on the CPU."""

    def __init__(self, data: list[torch.Tensor], paths: list[Path], seed: int):
        self.data, self.paths, self.seed = data, paths, seed

    def __len__(self) -> int:
        return len(self.data)

    def decode(self, device) -> list[torch.Tensor]:
        """Every image as uint8 (3, H, W) on ``device``: the JPEGs in one ``torchvision.io.decode_jpeg`` call there
        (nvJPEG on a GPU), any other file, or a JPEG that call refuses (CMYK, progressive on some versions), by
        the CPU decoder."""
        import warnings

        from torchvision.io import ImageReadMode, decode_jpeg
        out: list[torch.Tensor | None] = [None] * len(self.data)
        jpegs = [i for i, d in enumerate(self.data) if bytes(d[:3].tolist()) == JPEG_MAGIC]
        try:
            with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec (not a dependency here)
                warnings.simplefilter("ignore", DeprecationWarning)
                decoded = decode_jpeg([self.data[i] for i in jpegs], mode=ImageReadMode.RGB, device=device) \
                    if jpegs else []
            for i, img in zip(jpegs, decoded):
                out[i] = img
        except RuntimeError:  # one bad or unsupported file fails the whole call: those go to the CPU decoder
            pass
        return [img if img is not None else decode_image(path, data.numpy().tobytes()).to(device)
                for img, path, data in zip(out, self.paths, self.data)]

    def views(self, specs: Sequence, device) -> list[torch.Tensor]:
        """One uint8 (B, 3, s, s) batch per view spec on ``device``: each crop from the full decoded image, the crop
        boxes drawn as the worker path draws them (same seed, same order)."""
        return batch_views(self.decode(device), specs, self.seed)


class StreamedViews(torch.utils.data.Dataset):
    """Training batches of a :class:`StreamedImages` split: indexed by a batch of row indices (from the trainer's
    sampler), gives ([uint8 (B, 3, s, s) per view], labels), every crop from the full decoded image; with
    ``device_decode`` (a GPU run) gives (:class:`EncodedBatch`, labels) instead, decoded on the device by the
    trainer. A file that cannot be decoded gives (its DataError's message, None), which the trainer raises as that
    DataError (raised in a DataLoader worker, it would reach the user wrapped in a multi-line traceback)."""

    def __init__(self, images: StreamedImages, labels: torch.Tensor, specs: Sequence, seed: int,
                 device_decode: bool = False):
        self.images, self.labels, self.specs, self.seed = images, labels, list(specs), seed
        self.device_decode = device_decode

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx):
        from bench.threads import one_cpu_thread
        idx = torch.as_tensor(idx)
        if self.device_decode:
            data = [torch.frombuffer(bytearray(self.images.encoded(int(i))), dtype=torch.uint8) for i in idx]
            return EncodedBatch(data, [self.images.paths[int(i)] for i in idx], batch_seed(self.seed, idx)), \
                self.labels[idx]
        try:
            with one_cpu_thread():
                views = batch_views((self.images.full(int(i)) for i in idx), self.specs, batch_seed(self.seed, idx))
        except DataError as e:
            return str(e), None
        return views, self.labels[idx]
