"""Transfer datasets read from a user's local copies through ``torchvision.datasets`` (``download=False``: nothing
is ever fetched), decoded once into the same uint8 cache as every other source (:mod:`bench.data.cache`).

Data spec ``tv:NAME[:ROOT][?size=N]``: ``NAME`` one of :data:`TV_DATASETS`, ``ROOT`` the folder that
``torchvision.datasets.<Class>(root=ROOT)`` expects (default: the ``datasets_root`` argument, which the CLI takes
from ``--datasets-root`` / ``$BENCH_DATASETS_ROOT``), ``size`` the decode side (short side resized, centre crop;
default: the native 32 / 96 / 64 px of CIFAR / STL-10 / EuroSAT, else 256 = 224 / 0.875). Splits (see docs/transfer.md):

- the dataset's official ones (``train`` / ``val`` / ``test``, Pets ``trainval`` / ``test``);
- ``trainval`` of a dataset with an official val split (Flowers-102, DTD, FGVC-Aircraft): train then val rows in
  one array, the val rows marked as :attr:`TorchvisionData.holdout`: the probes select their hyper-parameters on
  them (fit on train), then refit the chosen probe on train + val;
- Caltech-101, EuroSAT and SUN397 have no official split in torchvision: ``train`` / ``test`` are a fixed seeded
  per-class split (:func:`seeded_split`, seed :data:`SPLIT_SEED`) of the images sorted by path.

File-backed images are hashed while decoding (data fingerprint: the files' sha256 plus the labels); CIFAR and
STL-10 ship pixel arrays, whose bytes are hashed instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.data.cache import files_cache_key, load_cached, progress_iter, write_npy
from bench.data.decode import resize_center
from bench.data.imagefolder import CACHE_VERSION, ImageData, _decode_all
from bench.errors import DataError

#: seed of the fixed train / test split of the datasets torchvision gives no split for
SPLIT_SEED = 0
ROOT_HINT = ("pass --datasets-root PATH or set BENCH_DATASETS_ROOT (from Python: datasets_root=PATH), or write the "
             "spec as tv:NAME:ROOT")


@dataclass(frozen=True)
class TVDataset:
    """How one torchvision dataset is read: ``cls`` (its ``torchvision.datasets`` class), ``splits`` (split ->
    the constructor keyword sets whose rows it concatenates; a second set's rows are the selection hold-out),
    ``expects`` (what must be under ROOT, for the error line), ``seeded`` (no official split: ``train`` / ``test``
    are drawn by :func:`seeded_split` with these keywords), ``arrays`` (pixels in ``.data``, not files)."""

    title: str
    cls: str
    expects: tuple[str, ...]
    splits: dict[str, tuple[dict, ...]] = field(default_factory=dict)
    seeded: dict | None = None
    arrays: bool = False
    kwargs: dict = field(default_factory=dict)
    size: int = 256
    scipy: bool = False


_TRAIN_TEST = {"train": ({"split": "train"},), "test": ({"split": "test"},)}
_WITH_VAL = {"train": ({"split": "train"},), "val": ({"split": "val"},), "test": ({"split": "test"},),
             "trainval": ({"split": "train"}, {"split": "val"})}
_CIFAR = {"train": ({"train": True},), "test": ({"train": False},)}

#: spec name -> how torchvision reads it; ``expects`` paths are relative to ROOT (a trailing / marks a folder)
TV_DATASETS: dict[str, TVDataset] = {
    "cifar10": TVDataset("CIFAR-10", "CIFAR10", (*(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
                         "cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"),
                         _CIFAR, arrays=True, size=32),
    "cifar100": TVDataset("CIFAR-100", "CIFAR100", ("cifar-100-python/train", "cifar-100-python/test",
                          "cifar-100-python/meta"), _CIFAR, arrays=True, size=32),
    "stl10": TVDataset("STL-10", "STL10", tuple(f"stl10_binary/{f}" for f in (
        "train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt")),
        _TRAIN_TEST, arrays=True, size=96),
    "flowers102": TVDataset("Flowers-102", "Flowers102", ("flowers-102/jpg/", "flowers-102/imagelabels.mat",
                            "flowers-102/setid.mat"), _WITH_VAL, scipy=True),
    "pets": TVDataset("Oxford-IIIT Pets", "OxfordIIITPet", ("oxford-iiit-pet/images/",
                      "oxford-iiit-pet/annotations/trainval.txt", "oxford-iiit-pet/annotations/test.txt"),
                      {"trainval": ({"split": "trainval"},), "test": ({"split": "test"},)}),
    "dtd": TVDataset("DTD", "DTD", ("dtd/dtd/images/", "dtd/dtd/labels/train1.txt", "dtd/dtd/labels/val1.txt",
                     "dtd/dtd/labels/test1.txt"), _WITH_VAL, kwargs={"partition": 1}),
    "food101": TVDataset("Food-101", "Food101", ("food-101/images/", "food-101/meta/train.json",
                         "food-101/meta/test.json"), _TRAIN_TEST),
    "aircraft": TVDataset("FGVC-Aircraft", "FGVCAircraft", ("fgvc-aircraft-2013b/data/images/",
                          "fgvc-aircraft-2013b/data/variants.txt",
                          *(f"fgvc-aircraft-2013b/data/images_variant_{s}.txt" for s in ("train", "val", "test"))),
                          _WITH_VAL, kwargs={"annotation_level": "variant"}),
    "cars": TVDataset("Stanford Cars", "StanfordCars", ("stanford_cars/devkit/cars_meta.mat",
                      "stanford_cars/devkit/cars_train_annos.mat", "stanford_cars/cars_train/",
                      "stanford_cars/cars_test/", "stanford_cars/cars_test_annos_withlabels.mat"),
                      _TRAIN_TEST, scipy=True),
    "caltech101": TVDataset("Caltech-101", "Caltech101", ("caltech101/101_ObjectCategories/",),
                            seeded={"train_per_class": 30}),
    "eurosat": TVDataset("EuroSAT", "EuroSAT", ("eurosat/2750/",), seeded={"train_frac": 0.8}, size=64),
    "sun397": TVDataset("SUN397", "SUN397", ("SUN397/ClassName.txt",),
                        seeded={"train_per_class": 50, "test_per_class": 50}),
}


@dataclass
class TorchvisionData(ImageData):
    """An :class:`ImageData` whose ``holdout`` (row indices, or None) is the split the dataset defines for model
    selection (its official val rows inside ``trainval``): the probes select on those rows instead of a random
    hold-out."""

    holdout: torch.Tensor | None = None


def parse_tv_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``tv:NAME[:ROOT][?size=N]`` -> (name, root or None, size or None)."""
    body, _, query = spec[len("tv:"):].partition("?")
    name, _, root = body.partition(":")
    size = None
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "size" or not value.isdigit() or int(value) < 1:
            raise DataError(f"dataset {spec!r}: unknown option {item!r} (tv: specs take ?size=N, N pixels)")
        size = int(value)
    if name not in TV_DATASETS:
        import difflib
        close = difflib.get_close_matches(name, list(TV_DATASETS), n=1)
        raise DataError(f"unknown torchvision dataset {name!r} in {spec!r}" + (f" (did you mean {close[0]!r}?)"
                        if close else "") + f"; known: {', '.join(TV_DATASETS)}")
    return name, root or None, size


def resolve_tv_root(spec: str, datasets_root: str | Path | None = None) -> Path:
    """The ROOT of a ``tv:`` spec: its own ``:ROOT``, else ``datasets_root``; a DataError when neither exists."""
    name, root, _ = parse_tv_spec(spec)
    where = root or datasets_root
    if not where:
        raise DataError(f"dataset {spec!r} ({TV_DATASETS[name].title}) is read from a local copy but no datasets "
                        f"root is set; {ROOT_HINT}")
    path = Path(where).expanduser()
    if not path.is_dir():
        raise DataError(f"datasets root {path} does not exist (needed by {spec!r}); {ROOT_HINT}")
    return path


def _missing(root: Path, entry: TVDataset) -> list[str]:
    return [rel for rel in entry.expects if not ((root / rel).is_dir() if rel.endswith("/") else (root / rel).is_file())]


def _expects(root: Path, entry: TVDataset) -> str:
    return ", ".join(f"{root}/{rel}" for rel in entry.expects)


def check_tv_present(spec: str, datasets_root: str | Path | None = None) -> Path:
    """The ROOT of a ``tv:`` spec, checked to hold the files torchvision reads (nothing is opened); a DataError
    naming the first one missing and all it expects otherwise."""
    name, _, _ = parse_tv_spec(spec)
    entry, root = TV_DATASETS[name], resolve_tv_root(spec, datasets_root)
    missing = _missing(root, entry)
    if missing:
        raise DataError(f"dataset {spec!r}: {entry.title} is not under {root} (missing {root / missing[0]}"
                        + (f" and {len(missing) - 1} more" if len(missing) > 1 else "") + f"); "
                        f"torchvision.datasets.{entry.cls}(root={str(root)!r}) expects {_expects(root, entry)} - "
                        f"extract the official archive there (nothing is downloaded) or {ROOT_HINT}")
    return root


def _construct(name: str, root: Path, spec: str, **kw):
    """``torchvision.datasets.<cls>(root, download=False, **kw)`` (after :func:`check_tv_present`); a folder it
    rejects is a DataError naming what torchvision expects there."""
    import torchvision.datasets as tvd
    entry = TV_DATASETS[name]
    expects = _expects(root, entry)
    if entry.scipy:
        try:
            import scipy.io  # noqa: F401
        except ImportError:
            raise DataError(f"dataset {spec!r}: torchvision reads {entry.title}'s .mat files with scipy, which is "
                            f"not installed; pip install 'ssl-bench[transfer]' (or scipy)") from None
    try:
        return getattr(tvd, entry.cls)(str(root), download=False, **entry.kwargs, **kw)
    except (RuntimeError, OSError, ValueError, KeyError, IndexError, EOFError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"dataset {spec!r}: torchvision.datasets.{entry.cls} cannot read {root} ({why}); it "
                        f"expects the official files {expects} (it checks the md5 of some of them)") from None


def seeded_split(labels: list[int], seed: int = SPLIT_SEED, *, train_per_class: int | None = None,
                 test_per_class: int | None = None, train_frac: float | None = None
                 ) -> tuple[list[int], list[int]]:
    """A fixed per-class train / test split of rows whose official order is ``labels``: per class the rows are
    shuffled by ``seed``; the first ``train_per_class`` (or ``round(train_frac * n)``) go to train, clipped to
    ``n - 1`` so every class keeps a test row, and the next ``test_per_class`` (default: all the rest) to test.
    Returns sorted (train rows, test rows)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    train, test = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)].tolist()
        n_train = train_per_class if train_per_class is not None else round(train_frac * len(idx))
        n_train = max(1, min(n_train, len(idx) - 1)) if len(idx) > 1 else len(idx)
        rest = idx[n_train:]
        train += idx[:n_train]
        test += rest if test_per_class is None else rest[:test_per_class]
    return sorted(train), sorted(test)


def _samples(ds, entry: TVDataset) -> tuple[list[str], list[int]]:
    """(image path, label) of every row of a file-backed torchvision dataset, in its order."""
    if entry.cls == "OxfordIIITPet":  # no loader argument: its file list
        return [str(p) for p in ds._images], list(ds._labels)
    if entry.cls == "Caltech101":  # no loader argument: the file names its __getitem__ opens
        return [os.path.join(ds.root, "101_ObjectCategories", ds.categories[y], f"image_{i:04d}.jpg")
                for y, i in zip(ds.y, ds.index)], list(ds.y)
    paths, labels = [], []
    for i in range(len(ds)):
        path, label = ds[i]  # constructed with loader=str: the file's path instead of its pixels
        paths.append(str(path))
        labels.append(int(label))
    return paths, labels


def _classes(ds) -> list[str]:
    return [str(c) for c in (ds.categories if hasattr(ds, "categories") else ds.classes)]


def _labels_digest(labels: list[int], classes: list[str]) -> str:
    return hashlib.sha256(("\n".join(classes) + "\n" + ",".join(map(str, labels))).encode()).hexdigest()


def _file_split(name: str, root: Path, spec: str, split: str, parts: tuple[dict, ...] | None, entry: TVDataset
                ) -> tuple[list[tuple[str, int]], list[str], int | None]:
    """(relpath, label) rows of a file-backed split, its classes and the first hold-out row (None: no hold-out)."""
    loader = {} if entry.cls in ("OxfordIIITPet", "Caltech101") else {"loader": str}
    if entry.seeded is not None:
        ds = _construct(name, root, spec, **loader)
        paths, labels = _samples(ds, entry)
        order = sorted(range(len(paths)), key=lambda i: os.path.relpath(paths[i], root))
        paths, labels = [paths[i] for i in order], [labels[i] for i in order]
        train, test = seeded_split(labels, SPLIT_SEED, **entry.seeded)
        rows = train if split == "train" else test
        files = [(os.path.relpath(paths[i], root), labels[i]) for i in rows]
        return files, _classes(ds), None
    files, classes, holdout_start = [], None, None
    for n, kw in enumerate(parts):
        ds = _construct(name, root, spec, **loader, **kw)
        paths, labels = _samples(ds, entry)
        if n == 1:
            holdout_start = len(files)
        files += [(os.path.relpath(p, root), y) for p, y in zip(paths, labels)]
        if classes is None:
            classes = _classes(ds)
        elif _classes(ds) != classes:
            raise DataError(f"dataset {spec!r}: torchvision lists other classes for {kw} than for {parts[0]}")
    return files, classes, holdout_start


def _array_split(name: str, root: Path, spec: str, parts: tuple[dict, ...]):
    ds = _construct(name, root, spec, **parts[0])
    data = np.asarray(ds.data)
    if data.ndim == 4 and data.shape[-1] != 3:  # STL-10 keeps (N, 3, H, W); CIFAR (N, H, W, 3)
        data = data.transpose(0, 2, 3, 1)
    labels = [int(y) for y in (ds.targets if hasattr(ds, "targets") else ds.labels)]
    return data, labels, _classes(ds)  # a transposed view: rows are copied only when decoded into the cache


def load_tv_split(spec: str, split: str, *, size: int | None = None, datasets_root: str | Path | None = None,
                  cache_dir: str | Path, progress: bool = False) -> TorchvisionData:
    """Decode (once) and memory-map one split of a ``tv:`` spec; see the module docstring."""
    name, _, spec_size = parse_tv_spec(spec)
    entry = TV_DATASETS[name]
    splits = ("train", "test") if entry.seeded is not None else tuple(entry.splits)
    if split not in splits:
        raise DataError(f"dataset {spec!r} ({entry.title}) has no split {split!r} (splits: {', '.join(splits)})")
    root = check_tv_present(spec, datasets_root)
    size = size or spec_size or entry.size
    if entry.arrays:
        data, labels, classes = _array_split(name, root, spec, entry.splits[split])
        listed = [(rel, 0) for rel in entry.expects]  # the batch files: a changed one gives a new entry

        def decode(npy: Path) -> str:
            def fill(arr: np.ndarray) -> str:
                for i in progress_iter(range(len(data)), f"decoding {spec} {split}", progress):
                    arr[i] = resize_center(torch.from_numpy(data[i]).permute(2, 0, 1), size).numpy()
                pixels = hashlib.sha256(data.tobytes()).hexdigest()
                return hashlib.sha256(f"{pixels}\n{_labels_digest(labels, classes)}".encode()).hexdigest()
            return write_npy(npy, (len(data), 3, size, size), fill)
        holdout_start = None
    else:
        files, classes, holdout_start = _file_split(name, root, spec, split, entry.splits.get(split), entry)
        labels = [y for _, y in files]
        if not files:
            raise DataError(f"dataset {spec!r} split {split!r} lists no images under {root}")

        def decode(npy: Path) -> str:
            digest = _decode_all(root, files, size, npy, None, split, progress)
            return hashlib.sha256(f"{digest}\n{_labels_digest(labels, classes)}".encode()).hexdigest()
        listed = files
    header = f"tv-v{CACHE_VERSION}\n{name}\n{split}\n{root.resolve()}\n{size}\n{_labels_digest([], classes)}\n"
    key = files_cache_key(header, root, listed)
    images, meta = load_cached(cache_dir, "image", key, {"root": f"{spec} {split}", "n": len(labels),
                                                          "classes": classes}, decode)
    holdout = None if holdout_start is None else torch.arange(holdout_start, len(labels))
    return TorchvisionData(images=images, labels=torch.tensor(labels, dtype=torch.long), classes=classes,
                           fingerprint=meta["fingerprint"], spec=spec, split=split, holdout=holdout)
