"""Dataset specs -> decoded, cached uint8 splits.

A dataset spec is a string:

- ``imagenette-mini``: the embedded default shipped inside the package (10 Imagenette classes at
  32 px, 200 train / 50 val per class; built by ``scripts/build_imagenette_mini.py``).
- ``imagenette64``: Imagenette v2 at 64 px, found under the data root (``--data-root``, then
  ``$BENCH_DATA_ROOT``, then ``../shared/datasets`` beside the repository or the working directory);
  ``bench data prepare imagenette64 SOURCE`` rebuilds it there from its public source (:mod:`bench.data.prepare`).
- ``imagefolder:PATH``: any ``PATH/<split>/<class>/<image>`` tree.
- ``moving-shapes[:n_train=N,n_val=M]``: procedural clips uint8 (N, T, 3, S, S) (labels ``direction`` and
  ``shape``; see :mod:`bench.data.moving_shapes`); ``videofolder:PATH``: ``PATH/<split>/<class>/<video>``
  decoded into cached clips (see :mod:`bench.data.video_folder`). Video splits are
  :class:`~bench.data.video_folder.ClipData`; their frames, stride and size come from the benchmark.
- ``imagenet``, ``imagenet100``, ``imagenette``, ``imagewoof``, ``imagenet:WNID_LIST``: ImageNet and class
  subsets read from a local ImageNet root (``--imagenet-root`` / ``$BENCH_IMAGENET_ROOT``); see
  :mod:`bench.data.imagenet`.
- ``hf:NAME[:CONFIG]`` / ``hf:PATH``: a Hugging Face dataset, loaded offline; see :mod:`bench.data.hf`.
- ``tv:NAME[:ROOT]``: a transfer dataset (CIFAR-10, Flowers-102, DTD, ...) read from a local copy through
  ``torchvision.datasets`` (ROOT default: ``datasets_root``, the CLI's ``--datasets-root`` /
  ``$BENCH_DATASETS_ROOT``); see :mod:`bench.data.torchvision_sets`.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shlex
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

#: named datasets of the data root that ``bench data prepare NAME SOURCE`` rebuilds: name -> the public source
SOURCES = {"imagenette64": "https://github.com/thunderInfy/imagenette"}

__all__ = ["DATASETS", "SOURCES", "ImageData", "data_fingerprint", "data_root_candidates", "dataset_root",
           "default_cache_dir", "how_to_get", "is_video_spec", "load_split", "resolve_data_root", "scan_imagefolder",
           "writable_data_root"]


def data_fingerprint(splits: list[tuple[str, str]]) -> str:
    """The data fingerprint of a benchmark (``BenchData.fingerprint``, pinned as ``Benchmark.data_fingerprint``):
    sha256 over a ``split:fingerprint`` line per split (train, then eval), each split's fingerprint that of its
    loader (image folders: :func:`bench.data.imagefolder.split_fingerprint`)."""
    return hashlib.sha256("\n".join(f"{split}:{fp}" for split, fp in splits).encode()).hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "ssl-bench")


def data_root_candidates(data_root: str | Path | None = None) -> list[Path]:
    """Where the data root may be, in order: the ``data_root`` argument, else ``$BENCH_DATA_ROOT``, else
    ``<repo>/../shared/datasets`` and ``./../shared/datasets``. The one place that knows these locations."""
    if data_root:
        return [Path(data_root).expanduser()]
    if os.environ.get("BENCH_DATA_ROOT"):
        return [Path(os.environ["BENCH_DATA_ROOT"]).expanduser()]
    return [REPO_ROOT.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"]


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The first existing folder of :func:`data_root_candidates`."""
    candidates = data_root_candidates(data_root)
    for c in candidates:
        if c.is_dir():
            return c
    raise DataError(f"data root not found (tried {', '.join(map(str, candidates))}); "
                    "pass --data-root or set BENCH_DATA_ROOT")


def writable_data_root(data_root: str | Path | None = None) -> Path:
    """Where a named dataset is written (``bench data prepare``): the data root that :func:`resolve_data_root`
    finds, or, if none exists yet, the first place it looks (so that it finds what was written there)."""
    candidates = data_root_candidates(data_root)
    return next((c for c in candidates if c.is_dir()), candidates[0])


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
                        f"imagenet:WNID_LIST, videofolder:PATH, hf:NAME or tv:NAME")
    if DATASETS[spec][0] == "imagenet-root":
        from bench.data.imagenet import resolve_imagenet_root
        return resolve_imagenet_root(imagenet_root, spec=spec)
    if DATASETS[spec][0] == "embedded":
        root = EMBEDDED_ROOT / spec
        if not root.is_dir():
            raise DataError(f"embedded dataset {spec!r} is missing from the package ({root}); "
                            "rebuild it with scripts/build_imagenette_mini.py")
        return root
    candidates = data_root_candidates(data_root)
    root = writable_data_root(data_root) / spec
    if not root.is_dir():
        where = f"at {root}" if root.parent.is_dir() else f"(no data root: tried {', '.join(map(str, candidates))})"
        raise DataError(f"dataset {spec!r} not found {where}; {how_to_get(spec, data_root)}")
    return root


def how_to_get(spec: str, data_root: str | Path | None = None) -> str:
    """What to do when a named dataset of the data root is missing (one clause of an error line)."""
    where = f" --data-root {shlex.quote(str(data_root))}" if data_root else ""
    fix = "pass --data-root or set BENCH_DATA_ROOT to the folder that holds it"
    if spec in SOURCES:
        url = SOURCES[spec]
        fix = (f"build it from its public source with `git clone {url} && bench data prepare {spec} "
               f"{url.rsplit('/', 1)[-1]}{where}`, or {fix}")
    return f"{fix}, or use the embedded data instead with --benchmark imagenette-mini-v1"


def load_split(spec: str, split: str, size: int | None = None, data_root: str | Path | None = None,
               cache_dir: str | Path | None = None, progress: bool = False,
               imagenet_root: str | Path | None = None, *, frames: int = 0, stride: int = 1,
               label: str | None = None, datasets_root: str | Path | None = None) -> ImageData:
    """Load one split of a dataset spec as uint8 (N, 3, S, S), decoding only on first use. Video specs
    (:func:`is_video_spec`) give ClipData with clips (N, frames, 3, size, size); ``label`` picks the label
    column of multi-label datasets (moving-shapes: ``direction`` | ``shape``); ``datasets_root``: the default ROOT
    of ``tv:`` specs."""
    if is_video_spec(spec):
        return _load_video_split(spec, split, size=size, frames=frames, stride=stride, label=label,
                                 cache_dir=cache_dir, progress=progress)
    if spec.startswith("hf:"):
        from bench.data.hf import load_hf_split
        return load_hf_split(spec, split, size=size, cache_dir=cache_dir or default_cache_dir(), progress=progress)
    if spec.startswith("tv:"):
        from bench.data.torchvision_sets import load_tv_split
        return load_tv_split(spec, split, size=size, datasets_root=datasets_root,
                             cache_dir=cache_dir or default_cache_dir(), progress=progress)
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
