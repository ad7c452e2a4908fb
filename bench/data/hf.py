"""Hugging Face image-classification datasets, loaded offline only (a dataset that is not on this
machine is a DataError, never a download).

Data specs: ``hf:NAME[:CONFIG]`` (a dataset in the local ``datasets`` cache, loaded with
``HF_HUB_OFFLINE``) or ``hf:PATH`` (a ``save_to_disk`` folder, or a folder of data files), each with
optional ``?image=COL&label=COL&size=N``. Without ``image`` / ``label`` the first ``Image`` feature and
the first ``ClassLabel`` feature (else a column named ``label``) are used. Split ``val`` falls back to
``validation``, ``valid`` or ``test``. Images are decoded once into the same memory-mapped uint8
(N, 3, S, S) cache as the ImageFolder loader (``size``: resize the short side + centre crop; without it
every image must have the first one's size).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from bench.data.cache import load_cached, progress_iter, write_npy
from bench.data.decode import decode_image, resize_center
from bench.data.imagefolder import CACHE_VERSION, ImageData
from bench.errors import DataError

SPLIT_ALIASES = {"val": ("validation", "valid", "test"), "validation": ("val", "valid"), "test": ("testing",)}
OPTIONS = ("image", "label", "size")


def parse_hf_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """``hf:NAME[:CONFIG][?k=v&...]`` -> (name or local path, config, options)."""
    body, _, query = spec[len("hf:"):].partition("?")
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if key not in OPTIONS or not sep or not value or (key == "size" and not value.isdigit()):
            raise DataError(f"dataset {spec!r}: bad option {item!r}; options: image=COLUMN, label=COLUMN, size=PIXELS")
        options[key] = value
    if not body:
        raise DataError(f"dataset {spec!r}: give a name or a folder, e.g. hf:cifar10 or hf:/path/to/saved_dataset")
    if is_local_path(body):
        return body, None, options
    name, _, config = body.partition(":")
    return name, config or None, options


def is_local_path(body: str) -> bool:
    """Whether the body of an ``hf:`` spec names a folder on this machine (not a dataset name)."""
    return body.startswith(("/", "./", "../", "~")) or Path(body).expanduser().is_dir()


@contextmanager
def _offline():
    """Force the Hub client and ``datasets`` into offline mode (restored afterwards)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when ``datasets`` is first imported
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets.config as dc
    import huggingface_hub.constants as hc
    saved = dc.HF_HUB_OFFLINE, dc.HF_DATASETS_OFFLINE, hc.HF_HUB_OFFLINE
    dc.HF_HUB_OFFLINE = dc.HF_DATASETS_OFFLINE = hc.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        dc.HF_HUB_OFFLINE, dc.HF_DATASETS_OFFLINE, hc.HF_HUB_OFFLINE = saved


def open_hf_dataset(spec: str):
    """The ``Dataset`` or ``DatasetDict`` a spec names, from local files only."""
    name, config, _ = parse_hf_spec(spec)
    with _offline():
        import datasets
        if is_local_path(name):
            path = Path(name).expanduser()
            if not path.is_dir():
                raise DataError(f"dataset {spec!r}: folder {path} does not exist")
            try:
                if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                    return datasets.load_from_disk(str(path))
                return datasets.load_dataset(str(path))
            except Exception as e:  # noqa: BLE001 - any loader failure is one line naming the folder
                raise DataError(f"dataset {spec!r}: cannot load {path} with the datasets library "
                                f"({type(e).__name__}: {_first_line(e)})") from None
        try:
            return datasets.load_dataset(name, config)
        except Exception as e:  # noqa: BLE001 - not cached, unknown config, ...: never retried online
            why = "" if isinstance(e, ConnectionError) else f" ({type(e).__name__}: {_first_line(e)})"
            raise DataError(
                f"Hugging Face dataset {name!r}{f' config {config!r}' if config else ''} is not available offline"
                f"{why}: it is not in the local datasets cache ({datasets.config.HF_DATASETS_CACHE}) and ssl-bench never "
                f"downloads; on a machine with network run datasets.load_dataset({name!r}"
                f"{f', {config!r}' if config else ''}).save_to_disk(DIR) and use --data hf:DIR") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _pick_split(ds, split: str, spec: str):
    from datasets import DatasetDict
    if not isinstance(ds, DatasetDict):
        if split == "train":
            return ds, split
        raise DataError(f"dataset {spec!r} is a single split (used as train); it has no {split!r} split - save a "
                        f"DatasetDict with train and validation/test splits")
    for name in (split, *SPLIT_ALIASES.get(split, ())):
        if name in ds:
            return ds[name], name
    raise DataError(f"dataset {spec!r} has no split {split!r} (found: {', '.join(ds) or 'none'})")


def _columns(ds, spec: str, options: dict) -> tuple[str, str]:
    from datasets import ClassLabel, Image
    feats = ds.features
    image = options.get("image") or next((c for c, f in feats.items() if isinstance(f, Image)), None)
    label = options.get("label") or next((c for c, f in feats.items() if isinstance(f, ClassLabel)), None) \
        or ("label" if "label" in feats else None)
    for role, col in (("image", image), ("label", label)):
        if col is None:
            raise DataError(f"dataset {spec!r}: no {role} column found among {', '.join(feats)}; "
                            f"name it with ?{role}=COLUMN")
        if col not in feats:
            raise DataError(f"dataset {spec!r}: no column {col!r} (columns: {', '.join(feats)})")
    if not isinstance(feats[image], Image):
        raise DataError(f"dataset {spec!r}: column {image!r} is {type(feats[image]).__name__}, not an Image feature")
    return image, label


def _classes(full, label: str, spec: str) -> tuple[list[str], dict | None]:
    """Class names and, for string / non-ClassLabel labels, a value -> index map (shared by every split)."""
    from datasets import ClassLabel, DatasetDict
    splits = list(full.values()) if isinstance(full, DatasetDict) else [full]
    feat = splits[0].features[label]
    if isinstance(feat, ClassLabel):
        return list(feat.names), None
    dtype = getattr(feat, "dtype", "")
    if not (dtype.startswith(("int", "uint")) or dtype == "string"):
        raise DataError(f"dataset {spec!r}: label column {label!r} is {feat!r}, not a ClassLabel, integer or string")
    # None and negative integers mark unlabelled rows (e.g. a hidden test split): not classes
    values = sorted({v for s in splits if label in s.features for v in s[label]
                     if v is not None and not (isinstance(v, int) and v < 0)})
    return [str(v) for v in values], {v: i for i, v in enumerate(values)}


def _cache_key(ds, split: str, image: str, label: str, size: int | None, spec: str) -> str:
    h = hashlib.sha256(f"hf-v{CACHE_VERSION}\n{spec.partition('?')[0]}\n{split}\n{image}\n{label}\n{size}\n"
                       f"{len(ds)}\n{ds._fingerprint}\n".encode())
    for f in ds.cache_files:
        st = os.stat(f["filename"])
        h.update(f"{f['filename']}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _decode_all(ds, image: str, labels: list[int], size: int | None, out_path: Path, spec: str, split: str,
                progress: bool) -> str:
    """Decode every image of ``ds`` into a new .npy at out_path; returns the fingerprint (sha256 over
    ``index<TAB>label<TAB>sha256(image bytes)`` lines)."""
    from datasets import Image
    raw = ds.select_columns([image]).cast_column(image, Image(decode=False))

    def encoded(i: int, item: dict) -> tuple[str, bytes]:
        where = f"{spec} {split}[{i}]" + (f" ({item['path']})" if item.get("path") else "")
        if item.get("bytes") is not None:
            return where, item["bytes"]
        try:
            return where, Path(item["path"]).read_bytes()
        except (OSError, TypeError) as e:
            raise DataError(f"cannot read image {where}: {getattr(e, 'strerror', None) or e}") from None

    where, data = encoded(0, raw[0][image])
    first = decode_image(where, data)
    side = size or min(first.shape[-2:])

    def fill(arr: np.ndarray) -> str:
        fp, i = hashlib.sha256(), 0
        batches = progress_iter(raw.iter(batch_size=256), f"decoding {spec} {split}", progress,
                                total=-(-len(ds) // 256), unit="batch")
        for batch in batches:
            for item in batch[image]:
                where, data = encoded(i, item)
                img = decode_image(where, data)
                if size is None and img.shape != first.shape:
                    raise DataError(f"{where} is {img.shape[-1]}x{img.shape[-2]} but the first image is "
                                    f"{first.shape[-1]}x{first.shape[-2]}; add ?size=N to the spec to resize on decode")
                arr[i] = resize_center(img, side).numpy()
                fp.update(f"{i}\t{labels[i]}\t{hashlib.sha256(data).hexdigest()}\n".encode())
                i += 1
        return fp.hexdigest()

    return write_npy(out_path, (len(ds), 3, side, side), fill)


def load_hf_split(spec: str, split: str, *, size: int | None = None, cache_dir: str | Path,
                  progress: bool = False) -> ImageData:
    """Load one split of an ``hf:`` spec as uint8 (N, 3, S, S), decoding only on first use."""
    _, _, options = parse_hf_spec(spec)
    size = size or (int(options["size"]) if "size" in options else None)
    full = open_hf_dataset(spec)
    ds, split_name = _pick_split(full, split, spec)
    if len(ds) == 0:
        raise DataError(f"dataset {spec!r} split {split_name!r} is empty")
    image, label = _columns(ds, spec, options)
    classes, mapping = _classes(full, label, spec)
    values = ds[label]
    labels = [mapping.get(v, -1) for v in values] if mapping is not None else [-1 if v is None else v for v in values]
    if min(labels) < 0 or max(labels) >= len(classes):
        raise DataError(f"dataset {spec!r} split {split_name!r} has unlabelled rows (label -1) or labels outside "
                        f"its {len(classes)} classes; use a labelled split")
    images, meta = load_cached(
        cache_dir, "image", _cache_key(ds, split_name, image, label, size, spec),
        {"root": spec, "n": len(ds), "classes": classes},
        lambda npy: _decode_all(ds, image, labels, size, npy, spec, split_name, progress))
    return ImageData(images=images, labels=torch.tensor(labels, dtype=torch.long), classes=classes,
                     fingerprint=meta["fingerprint"], spec=spec, split=split_name)
