"""`bench data prepare imagenette64 SOURCE`: the rebuild from thunderInfy/imagenette's layout (faked here with a
few random images), the shipped manifest and the fingerprint it pins, and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bench.data.prepare as prepare
from bench.benchmarks import get_benchmark
from bench.cli import main
from bench.data import data_fingerprint, dataset_root, load_split
from bench.data.imagefolder import parse_manifest, split_fingerprint
from bench.data.prepare import MANIFEST, prepare_imagenette64
from bench.errors import DataError
from bench.runner import BenchData

CLASSES = ("n00000001", "n00000002", "n00000003")
#: file names whose sorted order is not their numeric order (train keeps the first CAP in sorted order)
TRAIN_NAMES = ("n_10.JPEG", "n_2.JPEG", "n_1.JPEG", "n_9.png", "ILSVRC2012_val_7.JPEG")
VAL_NAMES = ("v_3.JPEG", "v_1.png")
CAP = 3


def _image(rng, size, mode="RGB") -> Image.Image:
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    arr[: size[1] // 2] //= 2  # some structure, so that a wrong crop or resize changes the bytes
    im = Image.fromarray(arr)
    return im.convert(mode)


def _fake_source(root: Path, classes=CLASSES, train=TRAIN_NAMES, val=VAL_NAMES) -> Path:
    """thunderInfy/imagenette's layout: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG, images larger than 64 px of
    random sizes (PNG among them); the first class's first train file (sorted) is greyscale, its second one far
    from square."""
    rng = np.random.default_rng(0)
    for split, names in (("train", train), ("val", val)):
        for ci, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i, name in enumerate(names):
                size = (int(rng.integers(70, 130)), int(rng.integers(70, 130)))
                mode = "RGB"
                if (ci, i, split) == (0, 4, "train"):  # ILSVRC2012_val_7.JPEG: sorts first
                    mode = "L"
                if (ci, i, split) == (0, 2, "train"):  # n_1.JPEG: sorts second
                    size = (150, 80)
                fmt = "PNG" if name.endswith(".png") else "JPEG"
                _image(rng, size, mode).save(root / split / cls / name, format=fmt)
    (root / ".git").mkdir()  # a clone's .git folder is not a class
    return root


def _reference(path: Path) -> bytes:
    """The dataset README's preprocessing, written out independently: RGB, bicubic resize of the short side to
    64 px, centre crop 64x64, JPEG quality 95."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w < h:
            nw, nh = 64, round(h * 64 / w)
        else:
            nw, nh = round(w * 64 / h), 64
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - 64) // 2, (nh - 64) // 2
        im = im.crop((left, top, left + 64, top + 64))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=95)
        return buf.getvalue()


def _expected(src: Path) -> dict[str, bytes]:
    """``split/class/name.jpg`` -> bytes: the first CAP train files per class (sorted names), every val file."""
    out = {}
    for split in ("train", "val"):
        for cls in CLASSES:
            files = sorted((src / split / cls).iterdir(), key=lambda p: p.name)
            for f in files[:CAP] if split == "train" else files:
                out[f"{split}/{cls}/{f.stem}.jpg"] = _reference(f)
    return out


def _manifest(path: Path, entries: dict[str, str]) -> Path:
    rows = ["split\tclass\tfile\tsha256"] + ["\t".join([*k.split("/"), v]) for k, v in entries.items()]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def source(tmp_path):
    return _fake_source(tmp_path / "imagenette")


@pytest.fixture
def reference_manifest(source, tmp_path):
    return _manifest(tmp_path / "ref.tsv", {k: hashlib.sha256(v).hexdigest() for k, v in _expected(source).items()})


def test_prepare_writes_the_readme_preprocessing_and_matches_a_manifest_of_it(source, reference_manifest, tmp_path):
    root = tmp_path / "data-root"
    result = prepare_imagenette64(source, root, train_per_class=CAP, manifest=reference_manifest)
    ds = root / "imagenette64"
    assert result.root == ds and result.counts == {"train": CAP * len(CLASSES), "val": len(VAL_NAMES) * len(CLASSES)}
    written = {str(p.relative_to(ds)): p.read_bytes() for p in ds.rglob("*.jpg")}
    expected = _expected(source)
    # layout, names (.JPEG / .png -> .jpg), the first CAP in sorted order (not numeric, not listing order)
    assert sorted(written) == sorted(expected)
    assert sorted(p.name for p in (ds / "train" / CLASSES[0]).iterdir()) == [
        "ILSVRC2012_val_7.jpg", "n_1.jpg", "n_10.jpg"]
    # content: byte for byte the reference transform, also for the greyscale and the non-square source
    assert written == expected
    for name in ("n_1.jpg", "ILSVRC2012_val_7.jpg"):
        with Image.open(ds / "train" / CLASSES[0] / name) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))
    with Image.open(source / "train" / CLASSES[0] / "n_1.JPEG") as im:  # 150x80: the centre of the wide image
        src = np.asarray(im.convert("RGB").resize((120, 64), Image.Resampling.BICUBIC))[:, 28:92].astype(float)
    with Image.open(ds / "train" / CLASSES[0] / "n_1.jpg") as im:
        assert np.abs(np.asarray(im).astype(float) - src).mean() < 8  # JPEG q95 error only
    # the manifest: every file matches; the rebuild carries a MANIFEST.tsv of its files, which the loader checks
    assert (result.matched, result.differ, result.missing, result.extra) == (len(expected), [], [], [])
    assert parse_manifest(ds / "MANIFEST.tsv") == parse_manifest(reference_manifest)
    # the fingerprint is the one the loader computes, and not imagenette64-v1's (other files)
    splits = [load_split(f"imagefolder:{ds}", s, cache_dir=tmp_path / "cache") for s in ("train", "val")]
    assert result.fingerprint == BenchData(*splits).fingerprint
    assert result.benchmarks == {"imagenette64-v1": False} and not result.reproduced
    assert "NOT reproduced" in result.summary()[-2]
    assert not [p for p in root.iterdir() if p.name != "imagenette64"]  # no temporary folder left


def test_a_rebuild_with_the_pinned_fingerprint_says_it_is_reproduced(source, reference_manifest, tmp_path,
                                                                      monkeypatch):
    first = prepare_imagenette64(source, tmp_path / "r1", train_per_class=CAP, manifest=reference_manifest)
    pinned = get_benchmark("imagenette64-v1").model_copy(update={"data_fingerprint": first.fingerprint})
    monkeypatch.setattr(prepare, "available_benchmarks", lambda: [pinned])
    result = prepare_imagenette64(source / "train", tmp_path / "r2", train_per_class=CAP,  # SOURCE/train also works
                                  manifest=reference_manifest)
    assert result.reproduced and result.fingerprint == first.fingerprint
    lines = result.summary()
    assert lines[0] == f"wrote 15 images (train 9, val 6) to {tmp_path / 'r2' / 'imagenette64'}"
    assert lines[1] == "15 of 15 files listed in the shipped manifest (imagenette64.tsv) match its sha256"
    assert lines[2].startswith(f"the data fingerprint of imagenette64-v1 is reproduced ({first.fingerprint[:12]}")


def test_files_that_differ_are_counted_and_the_ad_hoc_run_is_offered(source, reference_manifest, tmp_path):
    entries = parse_manifest(reference_manifest)
    changed = f"val/{CLASSES[1]}/v_1.jpg"
    entries[changed] = "0" * 64
    only = _manifest(tmp_path / "differ.tsv", entries)
    result = prepare_imagenette64(source, tmp_path / "a", train_per_class=CAP, manifest=only)
    assert (result.matched, result.differ, result.missing, result.extra) == (14, [changed], [], [])
    lines = result.summary()
    assert lines[1] == "14 of 15 files listed in the shipped manifest (imagenette64.tsv) match its sha256"
    assert lines[2].startswith(f"1 differ (e.g. {changed}): the data fingerprint of imagenette64-v1 is NOT reproduced")
    assert "Pillow" in lines[3] and prepare.REPRODUCED_WITH in lines[3]
    assert lines[-1].endswith(f"bench run --method simclr --data imagefolder:{tmp_path / 'a' / 'imagenette64'}")
    # a missing and an unlisted file as well
    extra = f"train/{CLASSES[0]}/n_1.jpg"
    del entries[extra]
    entries[f"val/{CLASSES[2]}/gone.jpg"] = "1" * 64
    result = prepare_imagenette64(source, tmp_path / "b", train_per_class=CAP, manifest=_manifest(tmp_path / "m.tsv",
                                                                                                  entries))
    assert (len(result.differ), result.missing, result.extra) == (1, [f"val/{CLASSES[2]}/gone.jpg"], [extra])
    line = result.summary()[2]
    assert line.startswith("1 differ, 1 are missing, 1 are not in the manifest") and "NOT reproduced" in line
    assert not any("Pillow" in s for s in result.summary())  # not an encoder difference: no Pillow advice


def test_an_existing_dataset_is_replaced_only_with_force(source, reference_manifest, tmp_path):
    root = tmp_path / "root"
    (root / "imagenette64" / "train").mkdir(parents=True)
    (root / "imagenette64" / "keep.txt").write_text("the old copy")
    with pytest.raises(DataError, match="imagenette64 already exists; pass --force"):
        prepare_imagenette64(source, root, train_per_class=CAP, manifest=reference_manifest)
    assert (root / "imagenette64" / "keep.txt").read_text() == "the old copy"
    prepare_imagenette64(source, root, train_per_class=CAP, manifest=reference_manifest, force=True)
    assert not (root / "imagenette64" / "keep.txt").exists() and (root / "imagenette64" / "MANIFEST.tsv").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["imagenette64"]  # the old copy and the temporary one are gone


def test_a_corrupt_source_image_leaves_nothing_behind(source, reference_manifest, tmp_path):
    (source / "val" / CLASSES[2] / "v_3.JPEG").write_bytes(b"not a jpeg")
    root = tmp_path / "root"
    with pytest.raises(DataError, match="v_3.JPEG: not a readable image file"):
        prepare_imagenette64(source, root, train_per_class=CAP, manifest=reference_manifest)
    assert list(root.iterdir()) == []


def test_the_default_data_root_is_where_the_loaders_look(source, reference_manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "env-root"))
    with pytest.raises(DataError, match="bench data prepare imagenette64 imagenette"):
        dataset_root("imagenette64")
    result = prepare_imagenette64(source, train_per_class=CAP, manifest=reference_manifest)
    assert result.root == tmp_path / "env-root" / "imagenette64" == dataset_root("imagenette64")


def test_the_shipped_manifest_pins_the_fingerprint_of_imagenette64_v1():
    """Every file matching the shipped manifest <=> the benchmark's fingerprint: it is computed from the file
    names and sha256s the manifest lists (in the loader's order), nothing else."""
    entries = parse_manifest(MANIFEST)
    splits = []
    for split in ("train", "val"):
        rows = sorted(tuple(k.split("/")[1:]) + (v,) for k, v in entries.items() if k.startswith(f"{split}/"))
        splits.append((split, split_fingerprint([(f"{cls}/{name}", digest) for cls, name, digest in rows])))
    assert data_fingerprint(splits) == get_benchmark("imagenette64-v1").data_fingerprint
    assert sum(k.startswith("train/") for k in entries) == 8000 and len(entries) == 8000 + 3925


@pytest.mark.needs_imagenette64
def test_the_shipped_manifest_is_the_datasets_own():
    assert MANIFEST.read_bytes() == (dataset_root("imagenette64") / "MANIFEST.tsv").read_bytes()


def test_cli_writes_the_dataset_and_reports_that_it_is_not_imagenette64_v1(tmp_path, capsys):
    """Through `bench`: the fake source with the real classes against the shipped manifest - written, every
    listed file missing, exit 1, and the printed ad-hoc command's dataset loads."""
    wnids = sorted({k.split("/")[1] for k in parse_manifest(MANIFEST)})
    src = _fake_source(tmp_path / "imagenette", classes=wnids, train=("a.JPEG",), val=("b.JPEG",))
    assert main(["data", "prepare", "imagenette64", str(src), "--data-root", str(tmp_path / "root"),
                 "--no-progress"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote 20 images (train 10, val 10) to {tmp_path / 'root' / 'imagenette64'}"
    assert out[1] == "0 of 11925 files listed in the shipped manifest (imagenette64.tsv) match its sha256"
    assert out[2].startswith("11925 are missing, 20 are not in the manifest")
    spec = out[-1].split("--data ")[1]
    assert len(load_split(spec, "val", cache_dir=tmp_path / "cache")) == 10


def _missing_class(t: Path) -> list[str]:
    src = _fake_source(t / "src")  # CLASSES, not the 10 Imagenette wnids the shipped manifest lists
    return [str(src)]


def _empty_class(t: Path) -> list[str]:
    wnids = sorted({k.split("/")[1] for k in parse_manifest(MANIFEST)})
    src = _fake_source(t / "src", classes=wnids, train=("a.JPEG",), val=("b.JPEG",))
    (src / "val" / wnids[3] / "b.JPEG").unlink()
    return [str(src)]


def _existing(t: Path) -> list[str]:
    wnids = sorted({k.split("/")[1] for k in parse_manifest(MANIFEST)})
    src = _fake_source(t / "src", classes=wnids, train=("a.JPEG",), val=("b.JPEG",))
    (t / "root" / "imagenette64").mkdir(parents=True)
    return [str(src)]


BAD = {
    "missing source": (lambda t: [str(t / "nowhere")], "nowhere is not a folder; expected a clone of "
                                                       "https://github.com/thunderInfy/imagenette"),
    "source without train/ and val/": (lambda t: [str(t)], "has no train/ and val/ folders; expected a clone"),
    "source with other classes": (_missing_class, "has no class folder n01440764 (expected the 10 folders"),
    "empty class folder": (_empty_class, "has no images"),
    "existing dataset without --force": (_existing, "already exists; pass --force to replace it"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_naming_what_is_expected(name, tmp_path, capsys):
    build, needle = BAD[name]
    argv = ["data", "prepare", "imagenette64", *build(tmp_path), "--data-root", str(tmp_path / "root"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert needle in err, err
    if name != "existing dataset without --force":
        assert not (tmp_path / "root").exists()  # bad input is found before anything is written
