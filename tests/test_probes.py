"""Probes: faiss k-NN equals brute force, selection never sees the eval labels, the batched
linear grid is exact, features are cached by weights + preprocessing + data."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bench.benchmarks import get_benchmark
from bench.errors import ConfigError
from probes.evaluate import evaluate_encoder
from probes.features import extract_features, tensor_sha256
from probes.knn import knn_classify, knn_probe
from probes.linear import linear_probe, train_linear_grid
from probes.selection import holdout_split


def blobs(n, d=32, c=5, spread=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=torch.Generator().manual_seed(123)) * 2
    y = torch.arange(n) % c
    return centers[y] + spread * torch.randn(n, d, generator=g), y


def brute_force_knn(train, train_y, query, k, t, c):
    sims = F.normalize(query, dim=1) @ F.normalize(train, dim=1).T
    top, idx = sims.topk(k, dim=1)
    scores = torch.zeros(len(query), c, dtype=top.dtype)
    return scores.scatter_add_(1, train_y[idx], (top / t).exp())


@pytest.mark.parametrize("k,t", [(1, 0.07), (5, 0.1), (20, 0.02), (50, 0.005)])
def test_faiss_knn_equals_brute_force(k, t):
    x, y = blobs(300, spread=3.0)
    q, _ = blobs(50, spread=3.0, seed=1)
    ours = knn_classify(x, y, q, k=k, temperature=t, num_classes=5)
    ref = brute_force_knn(x.double(), y, q.double(), k, t, 5)
    # equal up to the per-query stabilising factor exp(-max_sim / T)
    assert torch.allclose(ours.double() / ours.sum(1, keepdim=True), ref / ref.sum(1, keepdim=True), atol=1e-5)
    assert torch.equal(ours.argmax(1), ref.argmax(1))


def test_torch_knn_search_matches_faiss_and_stands_in_without_it(monkeypatch):
    import probes.knn as knn
    g = torch.Generator().manual_seed(0)
    train, query = torch.randn(300, 16, generator=g), torch.randn(40, 16, generator=g)
    f_sims, f_idx = knn.knn_search(train, query, 5)
    t_sims, t_idx = knn.torch_knn_search(train, query, 5, chunk=16, device="cpu")
    assert torch.equal(f_idx, t_idx) and torch.allclose(f_sims, t_sims, atol=1e-5)
    c_sims, c_idx = knn.knn_search(train, query, 5, chunk=7)  # queries searched 7 at a time: same answer
    assert torch.equal(c_idx, f_idx) and torch.equal(c_sims, f_sims)
    y = torch.randint(0, 3, (300,), generator=g)
    qy = torch.randint(0, 3, (40,), generator=g)
    with_faiss = knn.knn_probe(train, y, query, qy, ks=(5, 10), temperatures=(0.05,))
    monkeypatch.setattr(knn, "faiss", None)  # faiss not installed: the torch search gives the same probe
    assert knn.knn_search(train, query, 5)[1].equal(f_idx)
    without = knn.knn_probe(train, y, query, qy, ks=(5, 10), temperatures=(0.05,))
    assert (without.top1, without.selected) == (with_faiss.top1, with_faiss.selected)


def test_knn_small_temperature_does_not_overflow():
    x, y = blobs(300, spread=0.5)
    scores = knn_classify(x, y, x[:50], k=100, temperature=0.001, num_classes=5)
    assert torch.isfinite(scores).all() and (scores.argmax(1) == y[:50]).float().mean() > 0.95


def test_holdout_split_is_stratified_disjoint_and_deterministic():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    fit, hold = holdout_split(y, 0.1, seed=3)
    assert len(set(fit.tolist()) & set(hold.tolist())) == 0 and len(fit) + len(hold) == 100
    assert torch.bincount(y[hold]).tolist() == [5, 3, 2]
    fit2, hold2 = holdout_split(y, 0.1, seed=3)
    assert torch.equal(hold, hold2) and not torch.equal(hold, holdout_split(y, 0.1, seed=4)[1])


def test_holdout_split_keeps_every_class_in_fit():
    y = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3, 3, 3])
    fit, hold = holdout_split(y, 0.9, seed=0)
    assert torch.bincount(y[hold], minlength=4).tolist() == [1, 0, 2, 3]  # >= 1 when n >= 2, n - 1 at most
    assert set(y[fit].tolist()) == {0, 1, 2, 3} and sorted(fit.tolist() + hold.tolist()) == list(range(10))
    assert torch.bincount(y[holdout_split(y, 0.01)[1]], minlength=4).tolist() == [1, 0, 1, 1]


@pytest.mark.parametrize("probe", ["knn", "linear"])
def test_selection_never_touches_eval_labels(probe):
    """Shuffling the eval labels changes the reported score but not the selection."""
    x, y = blobs(400, spread=2.5)
    xt, yt = blobs(200, spread=2.5, seed=7)
    shuffled = yt[torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))]
    run = (lambda labels: knn_probe(x, y, xt, labels, ks=(1, 5, 20), temperatures=(0.02, 0.2))) if probe == "knn" \
        else (lambda labels: linear_probe(x, y, xt, labels, lrs=(0.001, 0.1), wds=(0.0, 0.1), epochs=10))
    clean, corrupt = run(yt), run(shuffled)
    assert clean.selected == corrupt.selected and clean.grid == corrupt.grid
    assert clean.holdout_top1 == corrupt.holdout_top1
    assert clean.top1 > corrupt.top1 + 20


def test_knn_selection_follows_train_data():
    """With noisy labels on train, more neighbours are better; the hold-out picks the largest k."""
    x, y = blobs(600, spread=2.0)
    noisy = y.clone()
    flip = torch.rand(len(y), generator=torch.Generator().manual_seed(1)) < 0.3
    noisy[flip] = (y[flip] + 1) % 5
    res = knn_probe(x, noisy, x[:10], y[:10], ks=(1, 50), temperatures=(1.0,))
    assert res.selected["k"] == 50 and res.grid["k=50,T=1.0"] > res.grid["k=1,T=1.0"]


def test_linear_probe_learns_separable_blobs():
    x, y = blobs(1000, d=64, c=10, spread=1.0)
    xt, yt = blobs(500, d=64, c=10, spread=1.0, seed=5)
    res = linear_probe(x, y, xt, yt, epochs=10)
    assert res.top1 > 95 and res.top5 == 100.0
    assert set(res.selected) == {"lr", "wd"} and len(res.grid) == 24


def test_linear_grid_members_are_independent():
    """Each member of the batched grid trains exactly as it would alone."""
    x, y = blobs(300, d=16, c=4, spread=2.0)
    lrs, wds = torch.tensor([0.01, 0.3, 1.0]), torch.tensor([0.0, 1e-3, 1e-2])
    w, b = train_linear_grid(x, y, lrs, wds, 4, epochs=5, batch_size=64, seed=0)
    for i in range(3):
        wi, bi = train_linear_grid(x, y, lrs[i:i + 1], wds[i:i + 1], 4, epochs=5, batch_size=64, seed=0)
        assert torch.allclose(w[:, i], wi[:, 0], atol=1e-5) and torch.allclose(b[i], bi[0], atol=1e-5)
    assert not torch.allclose(w[:, 0], w[:, 2])


def test_linear_grid_gradient_is_the_cross_entropy_gradient():
    """The written-out gradient equals autograd's for the mean cross-entropy of every member."""
    from probes.linear import ce_grad
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 5, 3, generator=g, requires_grad=True), torch.randint(0, 5, (6,), generator=g)
    loss = sum(torch.nn.functional.cross_entropy(logits[:, :, m], y) for m in range(3))
    (expected,) = torch.autograd.grad(loss, logits)
    assert torch.allclose(ce_grad(logits.detach(), y), expected, atol=1e-6)


class CountingEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x).mean((2, 3))


def test_feature_cache_hits_misses_and_recovers(tmp_path):
    images = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
    enc = CountingEncoder().train()
    kw = dict(img_size=16, batch_size=8, cache_dir=tmp_path, data_key="train:abc")
    first = extract_features(enc, images, **kw)
    assert first.shape == (20, 8) and enc.calls == 3 and enc.training  # mode restored
    assert torch.equal(extract_features(enc, images, **kw), first) and enc.calls == 3  # hit
    extract_features(enc, images, **{**kw, "data_key": "train:other"})
    assert enc.calls == 6  # other data -> miss
    extract_features(enc, images, **{**kw, "img_size": 12})
    assert enc.calls == 9  # other preprocessing -> miss
    with torch.no_grad():
        enc.conv.weight.add_(1.0)
    changed = extract_features(enc, images, **kw)
    assert enc.calls == 12 and not torch.allclose(changed, first)  # new weights -> miss
    for f in (tmp_path / "features").glob("*.pt"):
        f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        again = extract_features(enc, images, **kw)
    assert torch.allclose(again, changed)
    # an entry with the wrong number of rows (e.g. a truncated write by an old version) is recomputed
    for f in (tmp_path / "features").glob("*.pt"):
        torch.save({"feats": torch.zeros(3, 8), "sha256": tensor_sha256(torch.zeros(3, 8))}, f)
    with pytest.warns(UserWarning, match="wrong shape"):
        assert torch.allclose(extract_features(enc, images, **kw), changed)
    assert extract_features(enc, images, **kw).shape == (20, 8)  # and overwritten
    # silent corruption (one value changed, file still loads) fails the checksum and is recomputed
    for f in (tmp_path / "features").glob("*.pt"):
        entry = torch.load(f, weights_only=True)
        entry["feats"][0, 0] += 1.0
        torch.save(entry, f)
    calls = enc.calls
    with pytest.warns(UserWarning, match="checksum"):
        assert torch.allclose(extract_features(enc, images, **kw), changed)
    assert enc.calls > calls


def test_evaluate_encoder_reports_every_probe(tmp_path):
    from bench.data import ImageData
    g = torch.Generator().manual_seed(0)

    def split(n, name):
        labels = torch.arange(n) % 3
        imgs = (labels.view(-1, 1, 1, 1) * 100 + torch.randint(0, 40, (n, 3, 16, 16), generator=g)).to(torch.uint8)
        return ImageData(imgs, labels, ["a", "b", "c"], f"fp-{name}", "test", name)

    protocol = get_benchmark("imagenette-mini-v1").model_copy(update={"img_size": 16, "linear_epochs": 3})
    report = evaluate_encoder(CountingEncoder(), split(60, "train"), split(30, "val"), protocol, cache_dir=tmp_path)
    # CountingEncoder has no .tokens: the attentive probe is skipped, not faked
    assert set(report["scores"]) == {"knn_top1", "knn_top5", "linear_top1", "linear_top5"}
    assert report["scores"]["knn_top1"] > 90  # colour carries the label
    assert set(report["selected"]) == {"knn", "linear"} and set(report["holdout"]) == {"knn_top1", "linear_top1"}
    with pytest.raises(ConfigError, match="unknown probe 'svm'"):
        evaluate_encoder(CountingEncoder(), split(60, "train"), split(30, "val"), protocol, probes=("svm",))


def marker_tokens(n, t=16, c=4, seed=0):
    """Every token carries a random class pattern; only the token flagged in dim 0 carries the label."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    x = 0.3 * torch.randn(n, t, 1 + c + 3, generator=g)
    distractors = torch.randint(0, c, (n, t), generator=g)
    x[..., 1:1 + c] += 2 * F.one_hot(distractors, c).float()
    pos = torch.randint(0, t, (n,), generator=g)
    rows = torch.arange(n)
    x[rows, pos, 1:1 + c] = 2 * F.one_hot(y, c).float()
    x[rows, pos, 0] += 4.0
    return x, y


def test_attentive_probe_finds_the_one_informative_token():
    from probes.attentive import attentive_probe
    x, y = marker_tokens(1200)
    xt, yt = marker_tokens(400, seed=1)
    att = attentive_probe(x, y, xt, yt, lrs=(1e-2, 3e-2), wds=(1e-4,), heads=2, epochs=15, batch_size=128)
    mean_pooled = linear_probe(x.mean(1), y, xt.mean(1), yt, epochs=15)
    assert att.top1 > 90, att
    assert mean_pooled.top1 < 60, mean_pooled  # mean pooling drowns the token in distractors
    assert set(att.selected) == {"lr", "wd", "heads"}


def test_resnet_and_vit_backbones_expose_tokens():
    from bench.backbones import create_backbone
    x = torch.randn(2, 3, 32, 32)
    vit = create_backbone("vit_tiny", 32, patch_size=8)
    assert vit.tokens(x).shape == (2, 16, 192)
    keep = torch.tensor([[0, 5, 7], [1, 2, 3]])
    assert vit.tokens(x, keep=keep).shape == (2, 3, 192)
    cnn = create_backbone("resnet18", 32, stem="small")
    assert cnn.tokens(x).shape == (2, 4, 512)


def test_attentive_features_of_a_class_token_vit_include_the_class_token():
    """The attentive probe reads every output token: [CLS] first, then the patches (a DINO-style encoder's
    [CLS] is its trained read-out, so a probe that could not see it would under-rate the encoder)."""
    from bench.backbones import create_backbone
    from probes.features import extract_features
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    vit = create_backbone("vit_tiny", 32, patch_size=8, class_token=True, global_pool="token")
    tok = extract_features(vit, images, img_size=32, tokens=True, device="cpu")
    pooled = extract_features(vit, images, img_size=32, device="cpu")
    assert tok.shape == (3, 17, 192)
    torch.testing.assert_close(tok[:, 0].float(), pooled, atol=2e-2, rtol=1e-2)  # float16 tokens
    assert vit.tokens(images.float()).shape == (3, 16, 192)  # training-side tokens stay patch-only


def test_evaluate_encoder_with_a_plain_protocol_defaults_to_knn_and_linear():
    """Any object with the protocol attributes works; without ``.probes`` it runs k-NN and linear."""
    from types import SimpleNamespace
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(40) % 2
    imgs = (labels.view(-1, 1, 1, 1) * 150 + torch.randint(0, 60, (40, 3, 8, 8), generator=g)).to(torch.uint8)
    data = SimpleNamespace(images=imgs, labels=labels, classes=["a", "b"], fingerprint="fp", split="train")
    test = SimpleNamespace(**{**vars(data), "split": "val"})
    protocol = SimpleNamespace(img_size=8, crop_pct=1.0, holdout_frac=0.2, split_seed=0, knn_k=(3, 5), knn_t=(0.07,),
                               linear_lr=(0.1,), linear_wd=(0.0, 1e-3), linear_epochs=3, linear_batch_size=16)
    report = evaluate_encoder(CountingEncoder(), data, test, protocol)
    assert set(report["scores"]) == {"knn_top1", "knn_top5", "linear_top1", "linear_top5"}
    assert report["selected"]["knn"]["k"] in (3, 5) and report["selected"]["linear"]["lr"] == 0.1
    assert set(report["probe_time_s"]) == {"features", "knn", "linear", "estimators"}
    assert set(report["estimators"]) == {"rankme", "alpha_req", "lidar"}


def test_feature_cache_separates_same_weights_different_forward(tmp_path):
    class MaxPooled(CountingEncoder):
        def forward(self, x):
            self.calls += 1
            return self.conv(x).amax((2, 3))

    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    a, b = CountingEncoder(), MaxPooled()
    b.load_state_dict(a.state_dict())
    kw = dict(img_size=16, cache_dir=tmp_path, data_key="train:x")
    fa, fb = extract_features(a, images, **kw), extract_features(b, images, **kw)
    assert b.calls == 1 and not torch.allclose(fa, fb)


def test_standardised_attentive_probe_ignores_a_shared_token_offset():
    """A large offset shared by every token (what trained ViTs often carry) drowns the marker token for the
    plain probe's per-token LayerNorm; standardising channels with train statistics removes it (benchmark
    field ``attentive_standardize``, moving-shapes-v2)."""
    from probes.attentive import attentive_probe
    x, y = marker_tokens(1200)
    xt, yt = marker_tokens(400, seed=1)
    g = torch.Generator().manual_seed(2)
    offset, scale = 50 * torch.randn(x.shape[-1], generator=g), 0.5 + torch.rand(x.shape[-1], generator=g)
    kw = dict(lrs=(1e-2, 3e-2), wds=(1e-4,), heads=2, epochs=15, batch_size=128)
    plain = attentive_probe(x * scale + offset, y, xt * scale + offset, yt, **kw)
    std = attentive_probe(x * scale + offset, y, xt * scale + offset, yt, standardize=True, **kw)
    assert std.top1 > 90, std
    assert plain.top1 < std.top1 - 20, plain
