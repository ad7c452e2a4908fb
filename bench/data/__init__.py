"""Dataset specs -> decoded, cached uint8 splits.

A dataset spec is a string:

- ``imagenette-mini``: the embedded default shipped inside the package (10 Imagenette classes at
  32 px, 200 train / 50 val per class; built by ``scripts/build_imagenette_mini.py``).
- ``imagenette64``: Imagenette v2 at 64 px, found under the data root (``--data-root``, then
  ``$BENCH_DATA_ROOT``, then ``../shared/datasets`` beside the repository or the working directory).
- ``imagefolder:PATH``: any ``PATH/<split>/<class>/<image>`` tree.
- ``moving-shapes[:n_train=N,n_val=M]``: procedural clips uint8 (N, T, 3, S, S) (labels ``direction`` and
  ``shape``; see :mod:`bench.data.moving_shapes`); ``videofolder:PATH``: ``PATH/<split>/<class>/<video>``
  decoded into cached clips (see :mod:`bench.data.video_folder`). Video splits are
  :class:`~bench.data.video_folder.ClipData`; their frames, stride and size come from the benchmark.
- ``imagenet``, ``imagenet100``, ``imagenette``, ``imagewoof``, ``imagenet:WNID_LIST``: ImageNet and class
  subsets read from a local ImageNet root (``--imagenet-root`` / ``$BENCH_IMAGENET_ROOT``); see
  :mod:`bench.data.imagenet`.
- ``hf:NAME[:CONFIG]`` / ``hf:PATH``: a Hugging Face dataset, loaded offline; see :mod:`bench.data.hf`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from bench.data.imagefolder import ImageData, load_imagefolder, scan_imagefolder
from bench.data.imagenet import SUBSETS as IMAGENET_SUBSETS
from bench.data.imagenet import is_imagenet_spec
from bench.errors import DataError

EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded"
REPO_ROOT = Path(__file__).resolve().parents[2]

#: named datasets: spec -> (where it lives, one-line description)
DATASETS = {
    "imagenette-mini": ("embedded", "10 Imagenette classes, 32 px, 200 train / 50 val per class (ships with the package)"),
    "imagenette64": ("data-root", "Imagenette v2 at 64 px, 800 train per class + official val (under the data root)"),
    **{name: ("imagenet-root", desc) for name, (_, desc) in IMAGENET_SUBSETS.items()},
    "moving-shapes": ("procedural", "moving shapes clips (direction + shape labels), 4000 train / 1000 val, "
                                    "rendered on the fly (video)"),
}

__all__ = ["DATASETS", "ImageData", "default_cache_dir", "dataset_root", "is_video_spec", "load_split",
           "resolve_data_root", "scan_imagefolder"]


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "ssl-bench")


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """``data_root`` argument > ``$BENCH_DATA_ROOT`` > ``<repo>/../shared/datasets`` > ``./../shared/datasets``."""
    if data_root:
        candidates = [Path(data_root)]
    elif os.environ.get("BENCH_DATA_ROOT"):
        candidates = [Path(os.environ["BENCH_DATA_ROOT"])]
    else:
        candidates = [REPO_ROOT.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"]
    for c in candidates:
        if c.is_dir():
            return c
    raise DataError(f"data root not found (tried {', '.join(map(str, candidates))}); "
                    "pass --data-root or set BENCH_DATA_ROOT")


def dataset_root(spec: str, data_root: str | Path | None = None, imagenet_root: str | Path | None = None) -> Path:
    """The folder holding a spec's ``<split>/<class>/<image>`` tree (ImageNet specs: the ImageNet root)."""
    if spec.startswith("imagefolder:"):
        if not spec.split(":", 1)[1]:
            raise DataError(f"dataset {spec!r} names no folder: use imagefolder:PATH")
        root = Path(spec.split(":", 1)[1]).expanduser()
        if not root.is_dir():
            raise DataError(f"dataset {spec!r}: folder {root} does not exist")
        return root
    if spec not in DATASETS:
        close = difflib.get_close_matches(spec, list(DATASETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown dataset {spec!r}{hint}; known: {', '.join(DATASETS)}, imagefolder:PATH, "
                        f"imagenet:WNID_LIST, videofolder:PATH or hf:NAME")
    if DATASETS[spec][0] == "imagenet-root":
        from bench.data.imagenet import resolve_imagenet_root
        return resolve_imagenet_root(imagenet_root, spec=spec)
    if DATASETS[spec][0] == "embedded":
        root = EMBEDDED_ROOT / spec
        if not root.is_dir():
            raise DataError(f"embedded dataset {spec!r} is missing from the package ({root}); "
                            "rebuild it with scripts/build_imagenette_mini.py")
        return root
    root = resolve_data_root(data_root) / spec
    if not root.is_dir():
        raise DataError(f"dataset {spec!r} not found at {root}; pass --data-root or set BENCH_DATA_ROOT")
    return root


def load_split(spec: str, split: str, size: int | None = None, data_root: str | Path | None = None,
               cache_dir: str | Path | None = None, progress: bool = False,
               imagenet_root: str | Path | None = None, *, frames: int = 0, stride: int = 1,
               label: str | None = None) -> ImageData:
    """Load one split of a dataset spec as uint8 (N, 3, S, S), decoding only on first use. Video specs
    (:func:`is_video_spec`) give ClipData with clips (N, frames, 3, size, size); ``label`` picks the label
    column of multi-label datasets (moving-shapes: ``direction`` | ``shape``)."""
    if is_video_spec(spec):
        return _load_video_split(spec, split, size=size, frames=frames, stride=stride, label=label,
                                 cache_dir=cache_dir, progress=progress)
    if spec.startswith("hf:"):
        from bench.data.hf import load_hf_split
        return load_hf_split(spec, split, size=size, cache_dir=cache_dir or default_cache_dir(), progress=progress)
    if is_imagenet_spec(spec):
        from bench.data.imagenet import load_imagenet_split
        return load_imagenet_split(spec, split, size=size, imagenet_root=imagenet_root,
                                   cache_dir=cache_dir or default_cache_dir(), progress=progress)
    root = dataset_root(spec, data_root)
    split_dir = root / split
    if not split_dir.is_dir():
        splits = sorted(d.name for d in root.iterdir() if d.is_dir())
        raise DataError(f"dataset {spec!r} has no split {split!r} (found: {', '.join(splits) or 'none'})")
    return load_imagefolder(split_dir, size=size, cache_dir=cache_dir or default_cache_dir(), spec=spec,
                            split=split, progress=progress)


def is_video_spec(spec: str) -> bool:
    """True for dataset specs whose samples are clips (N, T, 3, H, W): moving-shapes[...] and videofolder:PATH."""
    return spec == "moving-shapes" or spec.startswith(("moving-shapes:", "videofolder:"))


def _load_video_split(spec: str, split: str, *, size: int | None, frames: int, stride: int, label: str | None,
                      cache_dir, progress: bool):
    if frames <= 0:  # a bare benchmark name is its latest version
        raise DataError(f"dataset {spec!r} is video: it needs a video benchmark (frames > 0), e.g. "
                        f"--benchmark moving-shapes")
    if spec.startswith("videofolder:"):
        from bench.data.video_folder import load_videofolder
        root = Path(spec.split(":", 1)[1]).expanduser()
        if not root.is_dir():
            raise DataError(f"dataset {spec!r}: folder {root} does not exist")
        if not (root / split).is_dir():
            splits = sorted(d.name for d in root.iterdir() if d.is_dir())
            raise DataError(f"dataset {spec!r} has no split {split!r} (found: {', '.join(splits) or 'none'})")
        if label not in (None, "class"):
            raise DataError(f"dataset {spec!r} has no label column {label!r} (a video folder has only 'class')")
        return load_videofolder(root / split, frames=frames, stride=stride, size=size or 32,
                                cache_dir=cache_dir or default_cache_dir(), spec=spec, split=split, progress=progress)
    from bench.data.moving_shapes import load_moving_shapes_split
    return load_moving_shapes_split(spec, split, frames=frames, size=size or 32, label=label)
