"""Score one frozen encoder with a benchmark's probe protocol."""

from __future__ import annotations

import time

from torch import nn

from bench.errors import ConfigError
from probes.attentive import attentive_probe
from probes.features import extract_features
from probes.knn import knn_probe
from probes.linear import linear_probe

PROBES = ("knn", "linear", "attentive")


def evaluate_encoder(encoder: nn.Module, train, test, protocol, probes=None, device=None,
                     cache_dir=None) -> dict:
    """Features of both splits (cached), then each probe: hyper-parameters selected on a hold-out of
    train, chosen probe refit on all train and scored once on ``test``. ``train``/``test`` are
    ``bench.data.ImageData``; ``protocol`` a ``bench.benchmarks.Benchmark``."""
    probes = tuple(probes or getattr(protocol, "probes", ("knn", "linear")))
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"unknown probe {unknown[0]!r}; known probes: {', '.join(PROBES)}")
    times: dict[str, float] = {}
    start = time.perf_counter()
    kw = dict(img_size=protocol.img_size, crop_pct=protocol.crop_pct, device=device, cache_dir=cache_dir)
    tr = extract_features(encoder, train.images, data_key=f"{train.split}:{train.fingerprint}", **kw)
    te = extract_features(encoder, test.images, data_key=f"{test.split}:{test.fingerprint}", **kw)
    times["features"] = time.perf_counter() - start
    common = dict(holdout_frac=protocol.holdout_frac, seed=protocol.split_seed, num_classes=len(train.classes))
    report: dict = {"scores": {}, "selected": {}, "holdout": {}, "probe_time_s": times}
    for name in probes:
        start = time.perf_counter()
        if name == "attentive":
            if not hasattr(encoder, "tokens"):
                continue  # encoders without tokens get no attentive score (the leaderboard shows a blank)
            t0 = time.perf_counter()
            tr_tok = extract_features(encoder, train.images, data_key=f"{train.split}:{train.fingerprint}",
                                      tokens=True, **kw)
            te_tok = extract_features(encoder, test.images, data_key=f"{test.split}:{test.fingerprint}",
                                      tokens=True, **kw)
            times["tokens"] = time.perf_counter() - t0
            start = time.perf_counter()
            res = attentive_probe(tr_tok, train.labels, te_tok, test.labels, lrs=protocol.attentive_lr,
                                  wds=protocol.attentive_wd, heads=protocol.attentive_heads,
                                  epochs=protocol.attentive_epochs, device=device, **common)
        elif name == "knn":
            res = knn_probe(tr, train.labels, te, test.labels, ks=protocol.knn_k, temperatures=protocol.knn_t, **common)
        else:
            res = linear_probe(tr, train.labels, te, test.labels, lrs=protocol.linear_lr, wds=protocol.linear_wd,
                               epochs=protocol.linear_epochs, batch_size=protocol.linear_batch_size, device=device,
                               **common)
        times[name] = time.perf_counter() - start
        report["scores"][f"{name}_top1"] = round(res.top1, 2)
        report["scores"][f"{name}_top5"] = round(res.top5, 2)
        report["selected"][name] = res.selected
        report["holdout"][f"{name}_top1"] = round(res.holdout_top1, 2)
    return report
