"""ImageFolder reader: ``root/<class>/<image>`` decoded once into a uint8 (N, 3, S, S) array that is
cached on disk as a memory-mapped ``.npy`` file keyed by root + file list + size, so every later
run opens it in milliseconds. Every file is hashed while decoding; the data fingerprint is the
sha256 over ``relpath<TAB>sha256`` lines, and a ``MANIFEST.tsv`` beside the splits (columns
split, class, file, sha256) is checked when present. The cache itself is :mod:`bench.data.cache`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.cache import cached_meta, files_cache_key, load_cached, write_npy
from bench.data.decode import decode_image, resize_center
from bench.data.parallel import ordered_map
from bench.data.streaming import StreamedImages, cache_budget
from bench.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
CACHE_VERSION = 4  # bump when decoding or the cache format changes (4: high bit depths scaled, mixed sizes)


@dataclass
class ImageData:
    """A decoded split: ``images`` uint8 (N, 3, S, S) (memory-mapped), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    fingerprint: str
    spec: str
    split: str

    def __len__(self) -> int:
        return len(self.labels)


def scan_class_folders(split_dir: Path, extensions: tuple[str, ...],
                       what: str = "image") -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class folders and (relpath, label) pairs of the files with one of ``extensions``, in sorted
    order, as ImageFolder assigns them; ``what`` (``image`` / ``video``) names the files in errors."""
    if not split_dir.is_dir():
        raise DataError(f"{what} folder {split_dir} does not exist")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{what} folder {split_dir} has no class sub-folders (expected {split_dir}/<class>/<{what}>)")
    files = []
    for label, cls in enumerate(classes):
        names = sorted(f.name for f in (split_dir / cls).iterdir()
                       if f.is_file() and f.suffix.lower() in extensions)
        if not names:
            raise DataError(f"class folder {split_dir / cls} has no {what}s ({', '.join(extensions)})")
        files += [(f"{cls}/{n}", label) for n in names]
    return classes, files


def scan_imagefolder(split_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class folders and (relpath, label) pairs in sorted order, as ImageFolder assigns them."""
    return scan_class_folders(split_dir, IMAGE_EXTENSIONS)


def read_manifest(root: Path) -> dict[str, str] | None:
    """``split/class/file`` -> sha256 from ``root/MANIFEST.tsv``, or None if there is none."""
    path = root / "MANIFEST.tsv"
    return parse_manifest(path) if path.is_file() else None


def parse_manifest(path: Path) -> dict[str, str]:
    """``split/class/file`` -> sha256 from a manifest file (a header, then split, class, file, sha256 per line)."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines()[1:], start=2):
        if line.strip():
            fields = line.split("\t")
            if len(fields) != 4:
                raise DataError(f"{path} line {n} is malformed: expected split, class, file and sha256 separated by tabs")
            split, cls, name, digest = fields
            out[f"{split}/{cls}/{name}"] = digest
    return out


def format_manifest(digests: dict[str, str]) -> str:
    """The text of a manifest (see :func:`parse_manifest`) for ``split/class/file`` -> sha256, in the given order."""
    rows = ["split\tclass\tfile\tsha256"] + ["\t".join([*rel.split("/"), digest]) for rel, digest in digests.items()]
    return "\n".join(rows) + "\n"


def split_fingerprint(digests: list[tuple[str, str]]) -> str:
    """A split's data fingerprint: sha256 over a ``relpath<TAB>sha256`` line per file (``class/file`` and the
    sha256 of its bytes) in the order :func:`scan_imagefolder` lists them."""
    return hashlib.sha256("".join(f"{rel}\t{digest}\n" for rel, digest in digests).encode()).hexdigest()


def _cache_key(split_dir: Path, files: list[tuple[str, int]], size: int | None) -> str:
    return files_cache_key(f"v{CACHE_VERSION}\n{split_dir.resolve()}\n{size}\n", split_dir, files)


def _short_side(path: Path, data: bytes | None = None) -> int:
    """The short side of an image file (or of its bytes ``data``), from its header."""
    import io

    from PIL import Image
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:  # the header only: no pixels decoded
            return min(im.size)
    except Exception as e:  # noqa: BLE001
        why = "not a readable image file" if type(e).__name__ == "UnidentifiedImageError" else f"{type(e).__name__}: {e}"
        raise DataError(f"cannot decode image {path}: {why}; fix or remove the file".splitlines()[0]) from None


def _read_checked(job: tuple[Path, str, str | None, int]) -> tuple[bytes, str]:
    """The bytes of one file and their sha256, checked against the manifest; ``job`` is (path, manifest key,
    expected sha256 or None when there is no manifest, side)."""
    path, key, expected, _ = job
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if key:
        if expected is None:
            raise DataError(f"{path} is not listed in {path.parents[2] / 'MANIFEST.tsv'}")
        if expected != digest:
            raise DataError(f"{path} does not match its sha256 in MANIFEST.tsv (changed or corrupt file)")
    return data, digest


def _decode_one(job: tuple[Path, str, str | None, int]) -> tuple[torch.Tensor, str]:
    """One file -> (uint8 (3, side, side), sha256 of its bytes) (``job``: see :func:`_read_checked`). Runs in a
    decode worker process."""
    data, digest = _read_checked(job)
    return resize_center(decode_image(job[0], data), job[3]), digest


def _check_one(job: tuple[Path, str, str | None, int]) -> tuple[torch.Tensor, str]:
    """One file -> (its bytes as a uint8 tensor, sha256), its header read (a file that is no image fails here,
    not mid-run). Runs in a worker process while a split is packed for streaming."""
    data, digest = _read_checked(job)
    _short_side(job[0], data)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), digest


def _jobs(split_dir: Path, files, manifest, split: str, side: int) -> list[tuple[Path, str, str | None, int]]:
    return [(split_dir / rel, f"{split}/{rel}" if manifest is not None else "",
             manifest.get(f"{split}/{rel}") if manifest is not None else None, side) for rel, _ in files]


def _decode_all(split_dir: Path, files, size: int | None, out_path: Path, manifest, split: str, progress: bool,
                workers: int | None = None) -> str:
    """Decode every file, resized (short side) and centre-cropped to ``size``, into a new .npy at out_path;
    returns the fingerprint. Without ``size``: the smallest short side in the folder (read from the headers).
    ``workers`` processes decode (default: :func:`bench.data.parallel.decode_workers`); the rows and the
    fingerprint do not depend on their number."""
    side = size or min(_short_side(split_dir / rel) for rel, _ in files)
    jobs = _jobs(split_dir, files, manifest, split, side)

    def fill(arr: np.ndarray) -> str:
        digests = []
        decoded = ordered_map(_decode_one, jobs, workers=workers, description=f"decoding {split_dir}",
                              progress=progress)
        for i, ((rel, _), (img, digest)) in enumerate(zip(files, decoded)):
            arr[i] = img.numpy()
            digests.append((rel, digest))
        return split_fingerprint(digests)

    return write_npy(out_path, (len(files), 3, side, side), fill)


def _pack_all(split_dir: Path, files, sizes: list[int], out_path: Path, manifest, split: str, progress: bool,
              workers: int | None = None) -> str:
    """Pack every file's bytes, in file order, into a new 1-D .npy at out_path (see :mod:`bench.data.streaming`);
    returns the fingerprint (the same as :func:`_decode_all` gives for these files)."""
    jobs = _jobs(split_dir, files, manifest, split, 0)

    def fill(arr: np.ndarray) -> str:
        digests, at = [], 0
        packed = ordered_map(_check_one, jobs, workers=workers, description=f"packing {split_dir}", progress=progress)
        for (rel, _), size, (data, digest) in zip(files, sizes, packed):
            if len(data) != size:
                raise DataError(f"{split_dir / rel} changed while it was packed ({size} bytes, then {len(data)}); "
                                f"run again")
            arr[at:at + size] = data.numpy()
            at += size
            digests.append((rel, digest))
        return split_fingerprint(digests)

    return write_npy(out_path, (sum(sizes),), fill)


def load_image_files(split_dir: Path, files: list[tuple[str, int]], *, size: int | None, cache_dir: str | Path,
                     manifest: dict | None, split: str, info: dict, progress: bool = False,
                     decode_workers: int | None = None):
    """The images of ``files`` (relpaths under ``split_dir``) and their data fingerprint: the decoded uint8
    (N, 3, S, S) cache entry, or, when that is not cached and would exceed the cache budget
    (:func:`bench.data.streaming.cache_budget`), a :class:`~bench.data.streaming.StreamedImages` over the packed
    file bytes. Without ``size`` S is the smallest short side in the folder (read from the headers)."""
    key = _cache_key(split_dir, files, size)
    meta = cached_meta(cache_dir, "image", key, len(files))
    if meta is None:
        sizes = [(split_dir / rel).stat().st_size for rel, _ in files]
        packed = cached_meta(cache_dir, "shard", key, sum(sizes))
        side = packed["side"] if packed else size or min(_short_side(split_dir / rel) for rel, _ in files)
        if packed or len(files) * 3 * side * side > cache_budget():
            data, packed = load_cached(cache_dir, "shard", key, {**info, "n": sum(sizes), "side": side},
                                       lambda npy: _pack_all(split_dir, files, sizes, npy, manifest, split, progress,
                                                             decode_workers), checked=packed)
            return StreamedImages(data, sizes, [split_dir / rel for rel, _ in files], side), packed["fingerprint"]
    else:  # cached and just checked: nothing is decoded, the entry is not checked again
        side = size
    images, meta = load_cached(cache_dir, "image", key, info,
                               lambda npy: _decode_all(split_dir, files, side, npy, manifest, split, progress,
                                                       decode_workers), checked=meta)
    return images, meta["fingerprint"]


def load_imagefolder(split_dir: str | Path, *, size: int | None = None, cache_dir: str | Path,
                     spec: str = "", split: str = "", check_manifest: bool = True,
                     progress: bool = False, decode_workers: int | None = None) -> ImageData:
    """Decode (once) and memory-map ``split_dir/<class>/<image>``; see the module docstring. ``decode_workers``:
    processes that decode a split not yet cached (default :func:`bench.data.parallel.decode_workers`)."""
    split_dir = Path(split_dir)
    classes, files = scan_imagefolder(split_dir)
    if check_manifest:
        manifest = read_manifest(split_dir.parent)
        if manifest is not None:
            listed = {k for k in manifest if k.startswith(f"{split_dir.name}/")}
            missing = listed - {f"{split_dir.name}/{rel}" for rel, _ in files}
            if missing:
                raise DataError(f"{len(missing)} file(s) listed in MANIFEST.tsv are missing from {split_dir}, "
                                f"e.g. {sorted(missing)[0]}")
    else:
        manifest = None
    images, fingerprint = load_image_files(
        split_dir, files, size=size, cache_dir=cache_dir, manifest=manifest, split=split_dir.name,
        info={"root": str(split_dir.resolve()), "n": len(files), "classes": classes}, progress=progress,
        decode_workers=decode_workers)
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return ImageData(images=images, labels=labels, classes=classes, fingerprint=fingerprint, spec=spec or f"imagefolder:{split_dir.parent}",
                     split=split or split_dir.name)
