"""Tiny fake copies of torchvision datasets in their exact on-disk layouts (read by the real torchvision classes).

Each class has its own colour (plus noise), so probes can tell classes apart. torchvision checks the md5 of
CIFAR's batch files and of Flowers-102's ``.mat`` files against the official archives'; :func:`accept_fake_md5s`
points those class attributes at the fakes' md5s (monkeypatch), so torchvision's integrity check still runs - on
these files - and a corrupted fake still fails it."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40)]


def _pixels(rng, label: int, h: int, w: int) -> np.ndarray:
    base = np.array(COLOURS[label % len(COLOURS)], dtype=np.int16)
    noise = rng.integers(-35, 35, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _jpg(path: Path, rng, label: int, h: int = 40, w: int = 52) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(rng, label, h, w)).save(path, quality=95)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar(root: Path, hundred: bool = False, n_classes: int = 3, per_class: tuple[int, int] = (12, 4)) -> Path:
    """``cifar-10-batches-py`` (5 train batches + test_batch + batches.meta) or ``cifar-100-python`` (train, test,
    meta): pickled dicts of uint8 (n, 3072) rows, channel-major, as the official archives hold."""
    rng = np.random.default_rng(1 if hundred else 0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"

    def batch(n_per_class: int) -> dict:
        labels = [c for c in range(n_classes) for _ in range(n_per_class)]
        data = np.stack([_pixels(rng, c, 32, 32).transpose(2, 0, 1).reshape(-1) for c in labels])
        return {"data": data, key: labels}

    train, test = batch(per_class[0]), batch(per_class[1])
    names = [f"class_{c}" for c in range(n_classes)]
    if hundred:
        files = {"train": train, "test": test, "meta": {"fine_label_names": names}}
    else:
        cut = np.array_split(np.arange(len(train[key])), 5)
        files = {f"data_batch_{i + 1}": {"data": train["data"][idx], key: [train[key][j] for j in idx]}
                 for i, idx in enumerate(cut)}
        files.update(test_batch=test, **{"batches.meta": {"label_names": names}})
    for name, obj in files.items():
        (folder / name).write_bytes(pickle.dumps(obj))
    return root


def make_flowers(root: Path, n_classes: int = 3, per_split: tuple[int, int, int] = (6, 4, 4)) -> Path:
    """``flowers-102/jpg/image_NNNNN.jpg`` + ``imagelabels.mat`` (1-based labels) + ``setid.mat`` (trnid, valid,
    tstid: 1-based image ids), written with scipy.io.savemat as the official files are MATLAB files."""
    from scipy.io import savemat
    rng = np.random.default_rng(2)
    folder = root / "flowers-102"
    labels, ids = [], {"trnid": [], "valid": [], "tstid": []}
    image_id = 0
    for key, n in zip(ids, per_split):
        for c in range(n_classes):
            for _ in range(n):
                image_id += 1
                labels.append(c + 1)
                ids[key].append(image_id)
                _jpg(folder / "jpg" / f"image_{image_id:05d}.jpg", rng, c)
    savemat(folder / "imagelabels.mat", {"labels": np.array([labels])})
    savemat(folder / "setid.mat", {k: np.array([v]) for k, v in ids.items()})
    return root


def make_dtd(root: Path, n_classes: int = 3, per_split: int = 5) -> Path:
    """``dtd/dtd/images/<class>/<class>_NNNN.jpg`` + ``dtd/dtd/labels/{train,val,test}1.txt`` (``class/file`` lines)."""
    rng = np.random.default_rng(3)
    data = root / "dtd" / "dtd"
    classes = ["banded", "dotted", "striped", "zigzagged"][:n_classes]
    for split in ("train", "val", "test"):
        lines = []
        for c, cls in enumerate(classes):
            for i in range(per_split):
                name = f"{cls}_{split}_{i:04d}.jpg"
                _jpg(data / "images" / cls / name, rng, c)
                lines.append(f"{cls}/{name}")
        (data / "labels").mkdir(parents=True, exist_ok=True)
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return root


def make_eurosat(root: Path, n_classes: int = 3, per_class: int = 10) -> Path:
    """``eurosat/2750/<class>/<class>_N.jpg`` (an ImageFolder, 64 px like the RGB release)."""
    rng = np.random.default_rng(4)
    for c, cls in enumerate(["AnnualCrop", "Forest", "River", "SeaLake"][:n_classes]):
        for i in range(per_class):
            _jpg(root / "eurosat" / "2750" / cls / f"{cls}_{i + 1}.jpg", rng, c, 64, 64)
    return root


def make_all(root: Path) -> Path:
    """The five fakes under one datasets root."""
    for make in (make_cifar, lambda r: make_cifar(r, hundred=True), make_flowers, make_dtd, make_eurosat):
        make(root)
    return root


def accept_fake_md5s(monkeypatch, root: Path) -> None:
    """Point torchvision's expected md5s (CIFAR-10/100 batches and meta, Flowers-102's .mat files) at the fakes'."""
    import torchvision.datasets as tvd
    for cls, folder in ((tvd.CIFAR10, "cifar-10-batches-py"), (tvd.CIFAR100, "cifar-100-python")):
        if not (root / folder).is_dir():
            continue
        for attr in ("train_list", "test_list"):
            monkeypatch.setattr(cls, attr, [[name, _md5(root / folder / name)] for name, _ in getattr(cls, attr)])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(root / folder / cls.meta["filename"])})
    if (root / "flowers-102").is_dir():
        fd = dict(tvd.Flowers102._file_dict)
        for key in ("label", "setid"):
            fd[key] = (fd[key][0], _md5(root / "flowers-102" / fd[key][0]))
        monkeypatch.setattr(tvd.Flowers102, "_file_dict", fd)


def make_pets(root: Path, per_split: tuple[int, int] = (4, 2)) -> Path:
    """``oxford-iiit-pet/images/<Breed>_<n>.jpg`` + ``annotations/{trainval,test}.txt`` (id, class 1-based,
    species, breed id)."""
    rng = np.random.default_rng(5)
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    n = 0
    for split, count in zip(("trainval", "test"), per_split):
        lines = []
        for c, breed in enumerate(["Abyssinian", "american_bulldog", "Bengal"]):
            for _ in range(count):
                n += 1
                _jpg(base / "images" / f"{breed}_{n}.jpg", rng, c)
                lines.append(f"{breed}_{n} {c + 1} {1 + (c == 1)} {c + 1}")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_caltech101(root: Path, per_class: int = 8) -> Path:
    """``caltech101/101_ObjectCategories/<class>/image_NNNN.jpg``, with the BACKGROUND_Google folder torchvision
    leaves out."""
    rng = np.random.default_rng(6)
    for c, cls in enumerate(["BACKGROUND_Google", "accordion", "airplanes", "anchor"]):
        for i in range(per_class):
            _jpg(root / "caltech101" / "101_ObjectCategories" / cls / f"image_{i + 1:04d}.jpg", rng, c)
    return root


def make_food101(root: Path, per_split: tuple[int, int] = (4, 2)) -> Path:
    """``food-101/images/<class>/<id>.jpg`` + ``food-101/meta/{train,test}.json`` (class -> ``class/id`` list)."""
    import json
    rng = np.random.default_rng(7)
    base = root / "food-101"
    (base / "meta").mkdir(parents=True, exist_ok=True)
    n = 0
    for split, count in zip(("train", "test"), per_split):
        meta = {}
        for c, cls in enumerate(["apple_pie", "baklava", "churros"]):
            meta[cls] = []
            for _ in range(count):
                n += 1
                _jpg(base / "images" / cls / f"{n}.jpg", rng, c)
                meta[cls].append(f"{cls}/{n}")
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
    return root


def make_aircraft(root: Path, per_split: int = 3) -> Path:
    """``fgvc-aircraft-2013b/data/images/<id>.jpg``, ``data/variants.txt`` and
    ``data/images_variant_{train,val,test}.txt`` (``<id> <variant name>`` lines; names may hold spaces)."""
    rng = np.random.default_rng(8)
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "Cessna 172"]
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    n = 1000000
    for split in ("train", "val", "test"):
        lines = []
        for c, v in enumerate(variants):
            for _ in range(per_split):
                n += 1
                _jpg(data / "images" / f"{n}.jpg", rng, c)
                lines.append(f"{n} {v}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_sun397(root: Path, per_class: int = 6) -> Path:
    """``SUN397/ClassName.txt`` (``/a/abbey`` lines) + ``SUN397/<letter>/<class>/sun_<id>.jpg``."""
    rng = np.random.default_rng(9)
    base = root / "SUN397"
    classes = ["a/abbey", "b/beach", "c/canyon"]
    base.mkdir(parents=True, exist_ok=True)
    (base / "ClassName.txt").write_text("".join(f"/{c}\n" for c in classes))
    for c, cls in enumerate(classes):
        for i in range(per_class):
            _jpg(base / cls / f"sun_{c}{i:03d}.jpg", rng, c)
    return root
