"""ImageNet subsets from a local ImageNet root (a fake tree built here: nothing is downloaded), the shipped
class / low-shot lists, the low-shot linear probes and the errors for a missing root or class."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from bench.benchmarks import get_benchmark
from bench.data import DATASETS, load_split
from bench.data.imagenet import LISTS_DIR, LOWSHOT_SUBSETS, class_list, lowshot_indices, read_list
from bench.errors import DataError

IMAGENETTE = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
              "n03425413", "n03445777", "n03888257"]
IMAGEWOOF = ["n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294", "n02099601",
             "n02105641", "n02111889", "n02115641"]
UNLISTED = "n09999999"  # a folder that belongs to no list: must never be picked up
WNID = re.compile(r"^n\d{8}$")


def _jpeg(path: Path, color) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), color).save(path, format="JPEG", quality=90)


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory) -> Path:
    """Imagenette classes hold exactly their SimCLR 1 % train images (real names, tiny fake pixels) plus two
    more; Imagewoof classes and an unlisted class hold 3 images; every class has 2 val images."""
    root = tmp_path_factory.mktemp("imagenet")
    one_pct = read_list(LISTS_DIR / LOWSHOT_SUBSETS["1pct"])
    for ci, wnid in enumerate(IMAGENETTE + IMAGEWOOF + [UNLISTED]):
        names = [n for n in one_pct if n.startswith(wnid)] if wnid in IMAGENETTE else []
        names += [f"{wnid}_{900000 + i}.JPEG" for i in range(3 - (wnid in IMAGENETTE))]
        for i, name in enumerate(names):
            _jpeg(root / "train" / wnid / name, (20 * ci % 256, 7 * i % 256, 128))
        for i in range(2):
            _jpeg(root / "val" / wnid / f"ILSVRC2012_val_{ci * 10 + i:08d}.JPEG", (20 * ci % 256, 60, 7 * i))
    return root


def test_shipped_class_lists_are_the_published_ones():
    in100 = class_list("imagenet100")
    assert len(in100) == len(set(in100)) == 100 and in100[:3] == ["n02869837", "n01749939", "n02488291"]
    assert class_list("imagenette") == IMAGENETTE and class_list("imagewoof") == IMAGEWOOF
    in1k = class_list("imagenet")
    assert len(in1k) == 1000 and in1k == sorted(set(in1k)) and all(WNID.match(w) for w in in1k)
    assert set(in100) <= set(in1k) and set(IMAGENETTE + IMAGEWOOF) <= set(in1k)
    for name in ("imagenet", "imagenet100", "imagenette", "imagewoof"):
        assert DATASETS[name][0] == "imagenet-root"


def test_shipped_lowshot_lists_are_simclrs():
    expected = {"1pct": (12811, "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17"),
                "10pct": (128116, "6d09de11e7bdaf5b1f3b1f249b6183695f97310cdd20f0c03e7235b6b9392091")}
    lists = {}
    for subset, (n, sha) in expected.items():
        names = read_list(LISTS_DIR / LOWSHOT_SUBSETS[subset])
        assert len(names) == len(set(names)) == n
        # google-research/simclr imagenet_subsets/{1,10}percent.txt, byte for byte
        assert hashlib.sha256(("\n".join(names) + "\n").encode()).hexdigest() == sha
        assert {n.split("_")[0] for n in names} == set(class_list("imagenet"))
        lists[subset] = set(names)
    assert lists["1pct"] <= lists["10pct"]


def test_subsets_select_their_wnids_and_images(fake_imagenet, tmp_path):
    kw = dict(size=16, imagenet_root=fake_imagenet, cache_dir=tmp_path)
    nette = load_split("imagenette", "train", **kw)
    assert nette.classes == sorted(IMAGENETTE) and UNLISTED not in nette.classes
    assert len(nette) == 129 + 20 and nette.images.shape == (149, 3, 16, 16) and nette.images.dtype == torch.uint8
    assert nette.labels.bincount().tolist() == [15] * 8 + [14, 15]  # n03445777 has 12 images in the 1 % list
    assert nette.files[0].startswith(f"{sorted(IMAGENETTE)[0]}/") and len(nette.files) == 149
    val = load_split("imagenette", "val", **kw)
    assert val.classes == nette.classes and val.labels.bincount().tolist() == [2] * 10
    woof = load_split("imagewoof", "train", **kw)
    assert woof.classes == sorted(IMAGEWOOF) and woof.labels.bincount().tolist() == [3] * 10
    wnids = tmp_path / "my_classes.txt"
    wnids.write_text(f"# two classes\n{IMAGEWOOF[3]}\n{IMAGENETTE[0]}\n")
    custom = load_split(f"imagenet:{wnids}", "val", **kw)
    assert custom.classes == sorted([IMAGEWOOF[3], IMAGENETTE[0]]) and len(custom) == 4
    again = load_split("imagenette", "train", **kw)  # a cache hit: same pixels, same fingerprint
    assert torch.equal(again.images, nette.images) and again.fingerprint == nette.fingerprint


def test_an_imagenet_split_over_the_cache_budget_is_streamed_with_the_same_rows(fake_imagenet, tmp_path):
    from bench.data import streaming
    from bench.data.streaming import StreamedImages
    kw = dict(size=16, imagenet_root=fake_imagenet)
    cached = load_split("imagewoof", "train", cache_dir=tmp_path / "c", **kw)
    streaming.set_cache_budget(0)
    try:
        streamed = load_split("imagewoof", "train", cache_dir=tmp_path / "s", **kw)
    finally:
        streaming.set_cache_budget(None)
    assert isinstance(streamed.images, StreamedImages) and streamed.files == cached.files
    assert streamed.fingerprint == cached.fingerprint and torch.equal(streamed.images[:], cached.images)


def test_root_comes_from_env_and_size_option(fake_imagenet, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_IMAGENET_ROOT", str(fake_imagenet))
    data = load_split("imagewoof?size=8", "val", cache_dir=tmp_path)
    assert data.images.shape == (20, 3, 8, 8) and data.spec == "imagewoof?size=8"
    with pytest.raises(DataError, match=r"\?size=N"):
        load_split("imagewoof?sise=8", "val", cache_dir=tmp_path)


def test_lowshot_lists_select_expected_counts_on_the_fake_tree(fake_imagenet, tmp_path):
    train = load_split("imagenette", "train", size=16, imagenet_root=fake_imagenet, cache_dir=tmp_path)
    idx = lowshot_indices(train, "1pct")  # the shipped SimCLR 1 % list, restricted to Imagenette's classes
    assert len(idx) == 129 and train.labels[idx].bincount().tolist() == [13] * 8 + [12, 13]
    assert all("_9000" not in train.files[i] for i in idx)  # the extra images are not in the subset
    own = tmp_path / "2shot.txt"  # a low-shot file written here: 2 images of 3 classes + one of another subset
    own.write_text("".join(f"{train.files[i].split('/')[1]}\n" for i in (0, 1, 20, 21, 40, 41))
                   + f"{IMAGEWOOF[0]}_1.JPEG\n")
    idx = lowshot_indices(train, own)
    assert idx.tolist() == [0, 1, 20, 21, 40, 41] and train.labels[idx].tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(DataError, match=r"1153 of the 1282 images of low-shot subset imagenet_10percent\.txt\.gz "
                                        r"are missing .*--imagenet-root"):
        lowshot_indices(train, "10pct")  # the fake tree holds only the 1 % images
    plain = load_split(f"imagefolder:{fake_imagenet}", "val", size=8, cache_dir=tmp_path)  # no file names kept
    with pytest.raises(DataError, match="low-shot probes select ImageNet train images by file name"):
        lowshot_indices(plain, "1pct")


def test_lowshot_probe_fits_on_the_subset_only(fake_imagenet, tmp_path, monkeypatch):
    import probes.lowshot
    from probes.evaluate import evaluate_encoder
    train = load_split("imagenette", "train", size=16, imagenet_root=fake_imagenet, cache_dir=tmp_path)
    val = load_split("imagenette", "val", size=16, imagenet_root=fake_imagenet, cache_dir=tmp_path)
    seen = []
    real = probes.lowshot.linear_probe

    def spy(train_feats, train_labels, *args, **kw):
        seen.append((len(train_feats), kw["holdout_frac"], kw["num_classes"]))
        return real(train_feats, train_labels, *args, **kw)

    monkeypatch.setattr(probes.lowshot, "linear_probe", spy)
    protocol = get_benchmark("imagenet-lowshot-v1").model_copy(update={
        "data": "imagenette", "img_size": 16, "crop_pct": 1.0, "linear_epochs": 2, "linear_lr": (0.1, 1.0),
        "linear_wd": (0.0,), "probes": ("linear_1pct",)})
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    report = evaluate_encoder(encoder, train, val, protocol, device="cpu", cache_dir=tmp_path)
    assert seen == [(129, 0.1, 10)]  # the probe (and its hold-out) saw only the 1 % images
    assert set(report["scores"]) == {"linear_1pct_top1", "linear_1pct_top5"}
    assert 0 <= report["scores"]["linear_1pct_top1"] <= 100 and set(report["selected"]["linear_1pct"]) == {"lr", "wd"}
    assert "linear_1pct_top1" in report["holdout"]


def test_lowshot_benchmark_is_registered():
    b = get_benchmark("imagenet-lowshot-v1")
    assert b.data == "imagenet" and b.probes == ("linear_1pct", "linear_10pct") and b.headline == "linear_1pct_top1"
    for name, data in (("imagenet100-v1", "imagenet100"), ("imagenette-v1", "imagenette"),
                       ("imagewoof-v1", "imagewoof")):
        assert get_benchmark(name).data == data and get_benchmark(name).img_size == 224


def test_missing_root_or_class_is_one_clear_line(fake_imagenet, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_IMAGENET_ROOT", "")  # recorded, so the value main() sets below is undone too
    monkeypatch.delenv("BENCH_IMAGENET_ROOT")
    with pytest.raises(DataError, match=r"no ImageNet root is set; pass --imagenet-root PATH or set BENCH_IMAGENET_ROOT"):
        load_split("imagenet100", "train", cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"ImageNet root .*nowhere does not exist"):
        load_split("imagenette", "train", imagenet_root=tmp_path / "nowhere", cache_dir=tmp_path)
    # the fake tree has Imagenette and Imagewoof, which share only 2 classes with ImageNet-100
    with pytest.raises(DataError, match=r"lacks 98 of the 100 imagenet100 classes in train/ \(n0\d{7}, .*\.\.\.\)"):
        load_split("imagenet100", "train", imagenet_root=fake_imagenet, cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"has no test/ folder"):
        load_split("imagenette", "test", imagenet_root=fake_imagenet, cache_dir=tmp_path)
    # through the CLI: --imagenet-root is a shared data option; the error is one line, exit code 2
    from bench.cli import main
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--method", "random", "--benchmark", "imagenet100-v1", "--imagenet-root", str(fake_imagenet),
                 "--cache-dir", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: ImageNet root") and "lacks 98 of the 100 imagenet100 classes" in err
