"""ImageNet and its class subsets, read from a local ImageNet root in the standard layout
``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG`` (nothing is ever downloaded).

Data specs (``NAME[?size=N]``; ``size`` is the decode side, default 256 = 224 / 0.875):

- ``imagenet``: all 1000 ILSVRC-2012 classes
- ``imagenet100``: the CMC ImageNet-100 class list (as used by solo-learn)
- ``imagenette`` / ``imagewoof``: fast.ai's 10-class lists, here with ImageNet's own train / val split
- ``imagenet:PATH``: any wnid list file (one wnid per line, ``#`` comments)

The class lists and SimCLR's 1 % / 10 % low-shot train subsets ship under ``bench/data/lists/``.
The root comes from ``--imagenet-root``, else ``$BENCH_IMAGENET_ROOT``. Classes are the sorted wnids
and files sorted within a class, as ImageFolder orders them; decoding and the memory-mapped cache are
the ImageFolder loader's (:mod:`bench.data.imagefolder`).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.data.imagefolder import IMAGE_EXTENSIONS, ImageData, load_image_files
from bench.errors import DataError

LISTS_DIR = Path(__file__).resolve().parent / "lists"
DEFAULT_SIZE = 256

#: spec name -> (class list under lists/, description)
SUBSETS = {
    "imagenet": ("imagenet1k.txt", "ImageNet-1k (ILSVRC-2012), 1000 classes, from --imagenet-root"),
    "imagenet100": ("imagenet100.txt", "ImageNet-100 (CMC / solo-learn class list), from --imagenet-root"),
    "imagenette": ("imagenette.txt", "Imagenette's 10 classes with ImageNet's train / val split, from --imagenet-root"),
    "imagewoof": ("imagewoof.txt", "Imagewoof's 10 dog breeds with ImageNet's train / val split, from --imagenet-root"),
}

#: low-shot train subsets (google-research/simclr imagenet_subsets/*.txt): name -> file under lists/
LOWSHOT_SUBSETS = {"1pct": "imagenet_1percent.txt.gz", "10pct": "imagenet_10percent.txt.gz"}

ROOT_HINT = "pass --imagenet-root PATH or set BENCH_IMAGENET_ROOT (PATH/train/<wnid>/*.JPEG, PATH/val/<wnid>/*.JPEG)"


@dataclass
class ImageNetData(ImageData):
    """An :class:`ImageData` that also knows each image's ``wnid/file`` (the low-shot probes select by name)."""

    files: tuple[str, ...] = ()


def is_imagenet_spec(spec: str) -> bool:
    return spec.split("?", 1)[0] in SUBSETS or spec.startswith("imagenet:")


def read_list(path: str | Path) -> list[str]:
    """Non-empty, non-``#`` lines of a text file (``.gz`` read compressed)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read list file {path}: {getattr(e, 'strerror', None) or e}") from None
    return [s for line in raw.decode().splitlines() if (s := line.strip()) and not s.startswith("#")]


def class_list(spec: str) -> list[str]:
    """The wnids of an ImageNet spec, in list-file order."""
    name = spec.split("?", 1)[0]
    path = Path(name.split(":", 1)[1]).expanduser() if name.startswith("imagenet:") else LISTS_DIR / SUBSETS[name][0]
    wnids = read_list(path)
    if not wnids:
        raise DataError(f"class list {path} is empty (expected one wnid per line)")
    return wnids


def resolve_imagenet_root(imagenet_root: str | Path | None = None, spec: str = "imagenet") -> Path:
    """``imagenet_root`` argument > ``$BENCH_IMAGENET_ROOT``; a DataError naming what to do otherwise."""
    root = imagenet_root or os.environ.get("BENCH_IMAGENET_ROOT")
    if not root:
        raise DataError(f"dataset {spec!r} is read from a local ImageNet copy but no ImageNet root is set; {ROOT_HINT}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"ImageNet root {root} does not exist (needed by {spec!r}); {ROOT_HINT}")
    return root


def scan_imagenet(root: Path, split: str, wnids: list[str], spec: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted wnids and (``wnid/file``, label) pairs of ``root/split`` restricted to ``wnids``."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"ImageNet root {root} has no {split}/ folder (expected {split_dir}/<wnid>/*.JPEG"
                        + ("; sort the flat validation images into wnid folders first" if split == "val" else "")
                        + f"); {ROOT_HINT}")
    classes = sorted(set(wnids))
    missing = [w for w in classes if not (split_dir / w).is_dir()]
    if missing:
        raise DataError(f"ImageNet root {root} lacks {len(missing)} of the {len(classes)} {spec} classes in "
                        f"{split}/ ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); "
                        f"point --imagenet-root at a complete ImageNet copy")
    files = []
    for label, wnid in enumerate(classes):
        names = sorted(f.name for f in os.scandir(split_dir / wnid)
                       if f.is_file() and os.path.splitext(f.name)[1].lower() in IMAGE_EXTENSIONS)
        if not names:
            raise DataError(f"ImageNet class folder {split_dir / wnid} has no images")
        files += [(f"{wnid}/{n}", label) for n in names]
    return classes, files


def _parse_spec(spec: str) -> tuple[str, int | None]:
    name, _, query = spec.partition("?")
    size = None
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "size" or not value.isdigit() or int(value) < 1:
            raise DataError(f"dataset {spec!r}: unknown option {item!r} (ImageNet specs take ?size=N, N pixels)")
        size = int(value)
    return name, size


def load_imagenet_split(spec: str, split: str, *, size: int | None = None, imagenet_root: str | Path | None = None,
                        cache_dir: str | Path, progress: bool = False) -> ImageNetData:
    """Decode (once) and memory-map one split of an ImageNet spec; images resized + centre-cropped to
    ``size`` (argument > ``?size=`` > 256)."""
    name, spec_size = _parse_spec(spec)
    size = size or spec_size or DEFAULT_SIZE
    wnids = class_list(name)  # before the root: a bad list is reported even without ImageNet
    root = resolve_imagenet_root(imagenet_root, spec)
    classes, files = scan_imagenet(root, split, wnids, name)
    split_dir = root / split
    images, fingerprint = load_image_files(
        split_dir, files, size=size, cache_dir=cache_dir, manifest=None, split=split,
        info={"root": str(split_dir.resolve()), "n": len(files), "classes": classes}, progress=progress)
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return ImageNetData(images=images, labels=labels, classes=classes, fingerprint=fingerprint,
                        spec=spec, split=split, files=tuple(rel for rel, _ in files))


def lowshot_indices(data: ImageData, subset: str | Path) -> torch.Tensor:
    """Sorted row indices of ``data`` (an ImageNet train split) named by a low-shot list: ``1pct`` / ``10pct``
    (SimCLR's subsets, shipped) or a path to a file with one image file name per line. Entries of classes
    outside ``data`` are skipped (ImageNet subsets); an entry of one of its classes that is missing is an error."""
    files = getattr(data, "files", None)
    if not files:
        raise DataError(f"the low-shot probes select ImageNet train images by file name, which {data.spec!r} does "
                        f"not provide; use an ImageNet data spec ({', '.join(SUBSETS)}) with --imagenet-root")
    path = LISTS_DIR / LOWSHOT_SUBSETS[subset] if str(subset) in LOWSHOT_SUBSETS else Path(subset)
    if not path.is_file():
        raise DataError(f"low-shot subset {str(subset)!r} is neither {' nor '.join(LOWSHOT_SUBSETS)} nor a file")
    index = {rel.rsplit("/", 1)[-1]: i for i, rel in enumerate(files)}
    classes = set(data.classes)
    wanted = [n for n in read_list(path) if n.split("_", 1)[0] in classes]
    missing = [n for n in wanted if n not in index]
    if missing:
        raise DataError(f"{len(missing)} of the {len(wanted)} images of low-shot subset {path.name} are missing "
                        f"from {data.spec!r} {data.split} (e.g. {missing[0]}); point --imagenet-root at a complete "
                        f"ImageNet copy")
    if not wanted:
        raise DataError(f"low-shot subset {path.name} names no image of the {len(classes)} classes of {data.spec!r}")
    return torch.tensor(sorted({index[n] for n in wanted}), dtype=torch.long)
