"""Rebuild ``imagenette64`` under the data root from the public source it was made from
(``bench data prepare imagenette64 SOURCE``).

SOURCE is the folder ``git clone https://github.com/thunderInfy/imagenette`` gives (Imagenette v2 at
224 px: ``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``), or its ``train`` / ``val`` folder. Each image is
converted to RGB, resized (bicubic) so that its short side is 64 px, centre-cropped to 64x64 and written as
JPEG quality 95 to ``ROOT/imagenette64/<split>/<wnid>/<name>.jpg``; train keeps the first 800 files per
class in sorted file-name order, val keeps every file. The folder is built under a temporary name beside
the target and renamed into place when complete; an existing dataset is replaced only with ``force``.

The benchmark's data fingerprint (``BenchData.fingerprint``) is a hash of the file names and the sha256 of
the file bytes, not of decoded pixels, so a rebuild reproduces it exactly when it is byte for byte the
original. The original's manifest ships in ``bench/data/lists/imagenette64.tsv``; the rebuild is compared
with it file by file and its fingerprint with every benchmark pinned on ``imagenette64``. JPEG encoders of
other Pillow / libjpeg versions may give other bytes: such a copy is written (with a MANIFEST.tsv of its
own files, which the loader checks) but the pinned benchmarks refuse it; it still serves ad-hoc runs
(``--data imagefolder:PATH``).
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.benchmarks import available_benchmarks
from bench.data import SOURCES, data_fingerprint, writable_data_root
from bench.data.cache import progress_iter
from bench.data.imagefolder import format_manifest, parse_manifest, scan_imagefolder, split_fingerprint
from bench.errors import DataError
from bench.io import file_sha256

NAME = "imagenette64"
#: the manifest of the copy the imagenette64 benchmarks were defined on (its MANIFEST.tsv)
MANIFEST = Path(__file__).resolve().parent / "lists" / "imagenette64.tsv"
SPLITS = ("train", "val")
SIZE = 64
QUALITY = 95
TRAIN_PER_CLASS = 800
#: where the shipped files were re-encoded byte for byte from the source (the manifest was checked)
REPRODUCED_WITH = "Pillow 13.0.0 (libjpeg-turbo 3.2.0)"
LAYOUT = (f"a clone of {SOURCES[NAME]} (`git clone {SOURCES[NAME]}`): a folder with train/<wnid>/*.JPEG and "
          f"val/<wnid>/*.JPEG")


@dataclass
class PrepareResult:
    """What :func:`prepare_imagenette64` wrote and how it compares with the shipped manifest."""

    root: Path                      #: the dataset folder written (``DATA_ROOT/imagenette64``)
    counts: dict[str, int]          #: images written per split
    matched: int                    #: files whose sha256 equals the manifest's
    differ: list[str] = field(default_factory=list)   #: ``split/class/file`` written with another sha256
    missing: list[str] = field(default_factory=list)  #: listed in the manifest, not written
    extra: list[str] = field(default_factory=list)    #: written, not listed in the manifest
    fingerprint: str = ""           #: the rebuild's data fingerprint (train + val)
    #: benchmark id -> whether the rebuild's fingerprint is the one that benchmark pins
    benchmarks: dict[str, bool] = field(default_factory=dict)

    @property
    def reproduced(self) -> bool:
        """Every file is byte for byte the original (so every pinned fingerprint is reproduced)."""
        return not (self.differ or self.missing or self.extra) and all(self.benchmarks.values())

    def summary(self) -> list[str]:
        """The report ``bench data prepare`` prints, one line per fact."""
        listed = self.matched + len(self.differ) + len(self.missing)
        counts = ", ".join(f"{split} {n}" for split, n in self.counts.items())
        lines = [f"wrote {sum(self.counts.values())} images ({counts}) to {self.root}",
                 f"{self.matched} of {listed} files listed in the shipped manifest ({MANIFEST.name}) match its sha256"]
        ids = ", ".join(self.benchmarks) or f"the {NAME} benchmarks"
        if self.reproduced:
            return [*lines, f"the data fingerprint of {ids} is reproduced ({self.fingerprint[:12]}...): this copy is "
                            f"the data the benchmark was defined on"]
        parts = [f"{len(v)} {what}" for v, what in ((self.differ, "differ"), (self.missing, "are missing"),
                                                    (self.extra, "are not in the manifest")) if v]
        example = (self.differ or self.missing or self.extra)[0] if parts else ""
        lines.append(f"{', '.join(parts)} (e.g. {example}): the data fingerprint of {ids} is NOT reproduced "
                     f"({self.fingerprint[:12]}...), so --benchmark refuses this copy for {ids}"
                     if parts else f"the data fingerprint of {ids} is NOT reproduced ({self.fingerprint[:12]}...)")
        if self.differ and not (self.missing or self.extra):
            from PIL import __version__ as pillow
            lines.append(f"the same images encode to other JPEG bytes with this Pillow {pillow}; the shipped files "
                         f"were reproduced with {REPRODUCED_WITH}: install that version and rerun with --force")
        lines.append(f"this copy still serves the benchmark's protocol as an ad-hoc benchmark (its own leaderboard, "
                     f"not comparable with {ids}): bench run --method simclr --data "
                     f"{shlex.quote(f'imagefolder:{self.root}')}")
        return lines


def downscale(image, size: int = SIZE):
    """A PIL image -> RGB, bicubic resize so that the short side is ``size`` px, centre crop ``size`` x ``size``."""
    from PIL import Image
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def encode_jpeg(image, quality: int = QUALITY) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def find_source(source: str | Path) -> Path:
    """The folder holding ``train/`` and ``val/``: SOURCE itself, or its parent when SOURCE is one of them."""
    src = Path(source).expanduser()
    if not src.is_dir():
        raise DataError(f"source {src} is not a folder; expected {LAYOUT}")
    if all((src / s).is_dir() for s in SPLITS):
        return src
    if src.name in SPLITS and all((src.parent / s).is_dir() for s in SPLITS):
        return src.parent
    raise DataError(f"source {src} has no {' and '.join(f'{s}/' for s in SPLITS)} folders; expected {LAYOUT}")


def _source_files(src: Path, split: str, classes: list[str], keep: int | None) -> list[tuple[str, Path]]:
    """(``class/name.jpg``, source file) of one split: the first ``keep`` files per class (all if None)."""
    try:
        found, files = scan_imagefolder(src / split)
    except DataError as e:
        raise DataError(f"{e}; expected {LAYOUT}") from None
    if found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        what = (f"has no class folder {missing[0]}" if missing else f"has a class folder {extra[0]} that {NAME} "
                f"does not have")
        raise DataError(f"source {src / split} {what} (expected the {len(classes)} folders {', '.join(classes)}); "
                        f"expected {LAYOUT}")
    per_class: dict[str, list[str]] = {}
    for rel, _ in files:
        cls, name = rel.split("/", 1)
        per_class.setdefault(cls, []).append(name)
    out = []
    for cls in classes:
        names = per_class[cls][:keep]
        stems = [Path(n).stem + ".jpg" for n in names]
        if len(set(stems)) < len(stems):
            dup = next(s for s in stems if stems.count(s) > 1)
            raise DataError(f"source {src / split / cls} has two images named like {Path(dup).stem} (other "
                            f"extensions); keep one of them")
        out += [(f"{cls}/{stem}", src / split / cls / n) for stem, n in zip(stems, names)]
    return out


def _convert(path: Path) -> bytes:
    from PIL import Image
    try:
        with Image.open(path) as im:
            return encode_jpeg(downscale(im))
    except Exception as e:  # noqa: BLE001 - any decoder failure means a corrupt or unsupported file
        why = "not a readable image file" if type(e).__name__ == "UnidentifiedImageError" else f"{type(e).__name__}: {e}"
        raise DataError(f"cannot read source image {path}: {why}".splitlines()[0]) from None


def _install(tmp: Path, target: Path, force: bool) -> None:
    """Rename the finished ``tmp`` onto ``target``; an existing target is moved aside first and removed last."""
    old = None
    if target.exists():
        if not force:
            raise DataError(f"{target} already exists; pass --force to replace it, or --data-root DIR to write "
                            f"elsewhere")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(old / target.name)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare_imagenette64(source: str | Path, data_root: str | Path | None = None, *, force: bool = False,
                         train_per_class: int = TRAIN_PER_CLASS, manifest: str | Path = MANIFEST,
                         progress: bool = False) -> PrepareResult:
    """Rebuild ``DATA_ROOT/imagenette64`` from SOURCE (see the module docstring) and compare it with
    ``manifest``; ``data_root`` defaults to the data root the loaders use (:func:`bench.data.writable_data_root`).
    The expected classes are those of ``manifest``; ``train_per_class`` caps the train files per class."""
    src = find_source(source)
    expected = parse_manifest(Path(manifest))
    classes = sorted({rel.split("/")[1] for rel in expected})
    target = writable_data_root(data_root) / NAME
    if target.exists() and not force:  # checked before the work; again when installing
        raise DataError(f"{target} already exists; pass --force to replace it, or --data-root DIR to write elsewhere")
    todo = [(split, rel, path) for split in SPLITS
            for rel, path in _source_files(src, split, classes, train_per_class if split == "train" else None)]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}.partial-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the dataset gets an ordinary folder's mode
    try:
        for split, rel, path in progress_iter(todo, f"preparing {NAME}", progress):
            out = tmp / split / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(_convert(path))
        # what the loader will hash: the files on disk, in its own listing order
        digests = {s: [(rel, file_sha256(tmp / s / rel)) for rel, _ in scan_imagefolder(tmp / s)[1]] for s in SPLITS}
        written = {f"{s}/{rel}": d for s in SPLITS for rel, d in digests[s]}
        (tmp / "MANIFEST.tsv").write_text(format_manifest(written))
        _install(tmp, target, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fingerprint = data_fingerprint([(s, split_fingerprint(digests[s])) for s in SPLITS])
    pinned = {b.id: b.data_fingerprint == fingerprint for b in available_benchmarks()
              if b.data == NAME and b.data_fingerprint and (b.train_split, b.eval_split) == SPLITS}
    return PrepareResult(
        root=target, counts={s: len(digests[s]) for s in SPLITS},
        matched=sum(expected.get(k) == d for k, d in written.items()),
        differ=sorted(k for k, d in written.items() if k in expected and expected[k] != d),
        missing=sorted(set(expected) - set(written)), extra=sorted(set(written) - set(expected)),
        fingerprint=fingerprint, benchmarks=pinned)
