"""Dataset specs -> decoded, cached uint8 splits.

A dataset spec is a string:

- ``imagenette-mini``: the embedded default shipped inside the package (10 Imagenette classes at
  32 px, 200 train / 50 val per class; built by ``scripts/build_imagenette_mini.py``).
- ``imagenette64``: Imagenette v2 at 64 px, found under the data root (``--data-root``, then
  ``$BENCH_DATA_ROOT``, then ``../shared/datasets`` beside the repository or the working directory).
- ``imagefolder:PATH``: any ``PATH/<split>/<class>/<image>`` tree.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from bench.data.imagefolder import ImageData, load_imagefolder, scan_imagefolder
from bench.errors import DataError

EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded"
REPO_ROOT = Path(__file__).resolve().parents[2]

#: named datasets: spec -> (where it lives, one-line description)
DATASETS = {
    "imagenette-mini": ("embedded", "10 Imagenette classes, 32 px, 200 train / 50 val per class (ships with the package)"),
    "imagenette64": ("data-root", "Imagenette v2 at 64 px, 800 train per class + official val (under the data root)"),
}

__all__ = ["DATASETS", "ImageData", "default_cache_dir", "dataset_root", "load_split", "resolve_data_root",
           "scan_imagefolder"]


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


def dataset_root(spec: str, data_root: str | Path | None = None) -> Path:
    """The folder holding a spec's ``<split>/<class>/<image>`` tree."""
    if spec.startswith("imagefolder:"):
        root = Path(spec.split(":", 1)[1]).expanduser()
        if not root.is_dir():
            raise DataError(f"dataset {spec!r}: folder {root} does not exist")
        return root
    if spec not in DATASETS:
        close = difflib.get_close_matches(spec, list(DATASETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown dataset {spec!r}{hint}; known: {', '.join(DATASETS)} or imagefolder:PATH")
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
               cache_dir: str | Path | None = None, progress: bool = False) -> ImageData:
    """Load one split of a dataset spec as uint8 (N, 3, S, S), decoding only on first use."""
    root = dataset_root(spec, data_root)
    split_dir = root / split
    if not split_dir.is_dir():
        splits = sorted(d.name for d in root.iterdir() if d.is_dir())
        raise DataError(f"dataset {spec!r} has no split {split!r} (found: {', '.join(splits) or 'none'})")
    return load_imagefolder(split_dir, size=size, cache_dir=cache_dir or default_cache_dir(), spec=spec,
                            split=split, progress=progress)
