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
