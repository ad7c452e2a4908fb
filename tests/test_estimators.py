"""Label-free estimators: RankMe, alpha-ReQ and LiDAR against hand-computed spectra, LiDAR's augmented views are
fixed by the seed, and records keep the estimators, their setup and the per-step probing times."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.benchmarks import get_benchmark
from bench.data import ImageData
from bench.records import RunRecord, load_record
from probes.estimators import (ALPHA_FIT_RANKS, alpha_req, augmented_views, estimate, fixed_rows, lidar,
                               power_law_exponent, rankme)


def entropy_rank(p: list[float]) -> float:
    return math.exp(-sum(x * math.log(x) for x in p if x > 0))


def test_rankme_of_known_singular_values():
    z = torch.zeros(5, 3)
    z[0, 0], z[1, 1] = 3.0, 1.0  # singular values 3, 1, 0
    assert rankme(z) == pytest.approx(entropy_rank([0.75, 0.25]), rel=1e-5)  # 1.7548
    assert rankme(torch.eye(4)) == pytest.approx(4.0, rel=1e-5)


def features_with_spectrum(lam: torch.Tensor, n: int = 400, seed: int = 0) -> torch.Tensor:
    """(n, D) features whose covariance (centred, ddof 1) has exactly the eigenvalues ``lam``."""
    a = torch.randn(n, len(lam), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(a - a.mean(0))  # orthonormal columns with zero mean
    return q * (lam * (n - 1)).sqrt()


def test_alpha_req_recovers_the_power_law_of_the_covariance():
    k = torch.arange(1, 151, dtype=torch.float64)
    assert alpha_req(features_with_spectrum(k ** -1.3)) == pytest.approx(1.3, abs=1e-6)
    assert alpha_req(features_with_spectrum(3.0 * k ** -0.8)) == pytest.approx(0.8, abs=1e-6)  # scale-free


def test_alpha_fit_ignores_the_head_and_tail_outside_its_ranks():
    lo, hi = ALPHA_FIT_RANKS
    lam = torch.arange(1, 301, dtype=torch.float64) ** -1.0
    lam[:lo - 1] *= 50.0   # a dominant head ...
    lam[hi:] *= 1e-3       # ... and a collapsed tail, both outside the fit
    assert power_law_exponent(lam.sort(descending=True).values) == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(power_law_exponent(torch.tensor([1.0, 0.0, 0.0])))


def test_lidar_of_a_hand_computed_discriminant():
    """3 images on an equilateral triangle in the xy-plane (S_b = diag(.75, .75, 0)); 6 views each at mu_i +- a_j e_j
    with a = (1, 2, 1): S_w = 2 diag(a^2) * 3 / (3 * 5) = diag(.4, 1.6, .4). S = diag(1.875, .46875, 0):
    p = (.8, .2) and LiDAR = exp(-(.8 ln .8 + .2 ln .2)) = 1.6494 (RankMe of the means would say 2)."""
    mus = torch.tensor([[1.0, 0, 0], [-0.5, math.sqrt(3) / 2, 0], [-0.5, -math.sqrt(3) / 2, 0]])
    a = torch.tensor([1.0, 2.0, 1.0])
    offsets = torch.cat([torch.diag(a), -torch.diag(a)])  # (6, 3)
    views = mus[:, None] + offsets[None]                   # (3, 6, 3)
    assert lidar(views, delta=0.0) == pytest.approx(entropy_rank([0.8, 0.2]), rel=1e-5)
    # isotropic views: the rank of the means' scatter, 2
    iso = mus[:, None] + torch.cat([torch.eye(3), -torch.eye(3)])[None]
    assert lidar(iso, delta=0.0) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 images"):
        lidar(views[:1])


def test_augmented_views_are_seeded_and_image_major():
    colours = torch.tensor([[250, 0, 0], [0, 250, 0], [0, 0, 250]], dtype=torch.uint8)
    images = colours.view(3, 3, 1, 1).expand(3, 3, 16, 16).clone()
    v = augmented_views(images, 4, seed=0)
    assert v.shape == (12, 3, 16, 16) and v.dtype == torch.uint8
    # a crop of a one-colour image keeps its colour: views 4i..4i+3 belong to image i
    assert torch.equal(v.float().mean((2, 3)).argmax(1), torch.arange(3).repeat_interleave(4))
    textured = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert torch.equal(augmented_views(textured, 3, 5), augmented_views(textured, 3, 5))
    assert not torch.equal(augmented_views(textured, 3, 5), augmented_views(textured, 3, 6))
    clips = textured[:, None].expand(2, 4, 3, 16, 16).clone()  # 4 identical frames
    cv = augmented_views(clips, 2, 0)
    assert cv.shape == (4, 4, 3, 16, 16) and torch.equal(cv[:, 0], cv[:, 3])  # one crop for every frame


class Pool(nn.Module):
    """A fixed random conv + global average pool: (B, 3, S, S) -> (B, 16)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


def tiny_split(n: int, name: str, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    imgs = (labels.view(-1, 1, 1, 1) * 80 + torch.randint(0, 80, (n, 3, 16, 16), generator=g)).to(torch.uint8)
    return ImageData(imgs, labels, ["a", "b", "c"], f"fp-{name}", "test", name)


def test_estimate_reads_no_labels_and_says_what_it_computed_on():
    train = tiny_split(60, "train")
    enc = Pool()
    from probes.features import extract_features
    feats = extract_features(enc, train.images, img_size=16, device="cpu")
    values, setup = estimate(enc, train.images, feats, img_size=16, seed=0, lidar_images=20, lidar_views=3,
                             device="cpu")
    assert set(values) == {"rankme", "alpha_req", "lidar"}
    assert 1.0 <= values["rankme"] <= 16 and 1.0 <= values["lidar"] <= 19
    assert setup["split"] == "train" and setup["rows"] == 60
    assert setup["lidar_images"] == 20 and setup["lidar_views"] == 3 and "crop" in setup["lidar_augment"]
    again, _ = estimate(enc, train.images, feats, img_size=16, seed=0, lidar_images=20, lidar_views=3, device="cpu")
    assert again == values  # fixed images, fixed views
    assert torch.equal(fixed_rows(100, 10, 3), fixed_rows(100, 10, 3)) and len(fixed_rows(5, 10, 0)) == 5


def test_records_keep_estimators_setup_and_probe_times(tmp_path):
    from bench.runner import BenchData
    from bench.scoring import evaluate
    protocol = get_benchmark("imagenette-mini-v1").model_copy(update={"img_size": 16, "linear_epochs": 2,
                                                                      "probes": ("knn", "linear")})
    rec = evaluate(Pool(), protocol, data=BenchData(tiny_split(60, "train"), tiny_split(30, "val", 1)),
                   results_dir=tmp_path)
    assert set(rec.estimators) == {"rankme", "alpha_req", "lidar"}
    assert rec.estimators_setup["lidar_views"] >= 2 and rec.estimators_setup["split"] == "train"
    assert set(rec.probe_times_s) == {"features", "estimators", "knn", "linear"}
    assert rec.probe_time_s == pytest.approx(sum(rec.probe_times_s.values()), abs=0.01)
    back = load_record(next(tmp_path.rglob("*.json")))
    assert back.estimators == rec.estimators and back.probe_times_s == rec.probe_times_s


def test_records_without_estimators_still_load():
    from pathlib import Path
    old = sorted((Path(__file__).resolve().parents[1] / "results" / "imagenette64-v1").glob("*.json"))[0]
    r = load_record(old)
    assert r.estimators == {} and r.estimators_setup == {} and r.probe_times_s == {} and r.fewshot == {}
    assert isinstance(r, RunRecord)
