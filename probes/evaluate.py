"""Score one frozen encoder with a benchmark's probe protocol."""

from __future__ import annotations

import time
from collections.abc import Callable

from torch import nn

from bench.errors import ConfigError
from probes.attentive import attentive_probe
from probes.estimators import estimate
from probes.features import extract_features
from probes.fewshot import fewshot_probe
from probes.knn import knn_probe
from probes.linear import linear_probe
from probes.lowshot import LOWSHOT_PROBES, lowshot_probe

PROBES = ("knn", "linear", "attentive", "fewshot", *LOWSHOT_PROBES)


def evaluate_encoder(encoder: nn.Module, train, test, protocol, probes=None, device=None,
                     cache_dir=None, log: Callable[[str], None] | None = print) -> dict:
    """Features of both splits (cached), then each probe: hyper-parameters selected on a hold-out of
    train (the rows ``train.holdout`` names, where the dataset defines them), chosen probe refit on all train and
    scored once on ``test``. ``train``/``test`` are
    ``bench.data.ImageData`` (or ``ClipData``: clips, pooled clip features for k-NN / linear, all tubelet
    tokens for the attentive probe); ``protocol`` a ``bench.benchmarks.Benchmark``. ``log`` gets a line when
    feature extraction starts and ends and one per probe as it finishes (``None``: silent).

    Every encoder also gets the label-free estimators of :mod:`probes.estimators` (RankMe, alpha-ReQ on the
    train features, LiDAR on augmented views of a fixed train subset): ``report["estimators"]`` and their
    ``estimators_setup``. ``report["probe_time_s"]`` has the seconds of feature extraction (``features``,
    ``tokens``), of each probe and of the estimators."""
    log = log or (lambda msg: None)
    probes = tuple(probes or getattr(protocol, "probes", ("knn", "linear")))
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"unknown probe {unknown[0]!r}; known probes: {', '.join(PROBES)}")
    times: dict[str, float] = {}
    start = time.perf_counter()
    kw = dict(img_size=protocol.img_size, crop_pct=protocol.crop_pct, device=device, cache_dir=cache_dir)
    # low-shot-only protocols never need the features of all of train
    need_train = bool({"knn", "linear", "fewshot"} & set(probes))
    log(f"features: {_splits(train, test, need_train)} at {protocol.img_size} px ...")
    tr = extract_features(encoder, train.images, data_key=f"{train.split}:{train.fingerprint}", **kw) \
        if need_train else None
    te = extract_features(encoder, test.images, data_key=f"{test.split}:{test.fingerprint}", **kw)
    times["features"] = time.perf_counter() - start
    log(f"features: {te.shape[-1]}-d, {times['features']:.0f}s")
    # a dataset's own selection rows (bench.data.torchvision_sets: val inside train + val) replace the random hold-out
    common = dict(holdout_frac=protocol.holdout_frac, seed=protocol.split_seed, num_classes=len(train.classes),
                  holdout=getattr(train, "holdout", None))
    report: dict = {"scores": {}, "selected": {}, "holdout": {}, "probe_time_s": times}
    start = time.perf_counter()
    src = train if tr is not None else test  # low-shot protocols: the eval split's features (no label is read)
    report["estimators"], report["estimators_setup"] = estimate(
        encoder, src.images, tr if tr is not None else te, img_size=protocol.img_size, crop_pct=protocol.crop_pct,
        seed=protocol.split_seed, split=src.split, device=device, cache_dir=cache_dir,
        data_key=f"{src.split}:{src.fingerprint}")
    times["estimators"] = time.perf_counter() - start
    log("estimators: " + " ".join(f"{k} {v:.2f}" for k, v in report["estimators"].items())
        + f" {times['estimators']:.0f}s")
    tr_tok = te_tok = None
    for name in probes:
        start = time.perf_counter()
        if name == "attentive":
            if not hasattr(encoder, "tokens"):
                log("probe attentive skipped: the encoder has no tokens()")
                continue  # encoders without tokens get no attentive score (the leaderboard shows a blank)
            t0 = time.perf_counter()
            log(f"tokens: {_splits(train, test, True)} ...")
            tr_tok = extract_features(encoder, train.images, data_key=f"{train.split}:{train.fingerprint}",
                                      tokens=True, **kw)
            te_tok = extract_features(encoder, test.images, data_key=f"{test.split}:{test.fingerprint}",
                                      tokens=True, **kw)
            times["tokens"] = time.perf_counter() - t0
            log(f"tokens: {tr_tok.shape[1]} x {tr_tok.shape[2]}-d per image, {times['tokens']:.0f}s")
            start = time.perf_counter()
            res = _fit_probe(name, tr_tok, te_tok, train.labels, test.labels, protocol, common, device)
        elif name == "fewshot":
            scores, holdout, selected, report["fewshot"] = fewshot_probe(
                tr, train.labels, te, test.labels, protocol, num_classes=len(train.classes), holdout=common["holdout"],
                device=device).report()
            times[name] = time.perf_counter() - start
            log("probe fewshot top1 " + " ".join(f"{k.split('_')[1]}-shot {v:.1f}" for k, v in scores.items()
                                                  if k.endswith("_top1")) + f" {times[name]:.0f}s")
            report["scores"].update(scores)
            report["holdout"].update(holdout)
            report["selected"].update(selected)
            continue
        elif name in LOWSHOT_PROBES:
            res = lowshot_probe(encoder, train, test, te, protocol, LOWSHOT_PROBES[name], train_feats=tr,
                                device=device, cache_dir=cache_dir)
        else:
            res = _fit_probe(name, tr, te, train.labels, test.labels, protocol, common, device)
        times[name] = time.perf_counter() - start
        log(_probe_line(name, res, times[name]))
        report["scores"][f"{name}_top1"] = round(res.top1, 2)
        report["scores"][f"{name}_top5"] = round(res.top5, 2)
        report["selected"][name] = res.selected
        report["holdout"][f"{name}_top1"] = round(res.holdout_top1, 2)
    # more label columns (video: moving-shapes' shape beside the headline direction): the same frozen
    # features and selection protocol, scored as <column>_<probe>_top1
    for column in getattr(protocol, "extra_labels", ()):
        (ytr, classes), (yte, _) = train.label_column(column), test.label_column(column)
        col_common = {**common, "num_classes": len(classes)}
        for name in probes:
            feats = (tr_tok, te_tok) if name == "attentive" else (tr, te)
            if name not in ("knn", "linear", "attentive") or feats[0] is None:
                continue
            start = time.perf_counter()
            res = _fit_probe(name, *feats, ytr, yte, protocol, col_common, device)
            times[f"{column}_{name}"] = time.perf_counter() - start
            log(_probe_line(f"{column}_{name}", res, times[f"{column}_{name}"]))
            report["scores"][f"{column}_{name}_top1"] = round(res.top1, 2)
            report["selected"][f"{column}_{name}"] = res.selected
            report["holdout"][f"{column}_{name}_top1"] = round(res.holdout_top1, 2)
    return report


def _splits(train, test, with_train: bool) -> str:
    """'train 9469 + val 3925 images' (the eval split alone when train's features are not needed)."""
    parts = [f"{train.split} {len(train.images)}"] if with_train else []
    return " + ".join([*parts, f"{test.split} {len(test.images)}"]) + " images"


def _probe_line(name: str, res, seconds: float) -> str:
    """'probe knn top1 45.2 (k=20 temperature=0.07) 12s'."""
    chosen = " ".join(f"{k}={v}" for k, v in res.selected.items())
    return f"probe {name} top1 {res.top1:.1f}" + (f" ({chosen})" if chosen else "") + f" {seconds:.0f}s"


def _fit_probe(name: str, train_feats, test_feats, train_labels, test_labels, protocol, common: dict, device):
    """k-NN / linear on pooled features, or attentive on tokens, with the protocol's grid (selected on a hold-out)."""
    if name == "attentive":
        return attentive_probe(train_feats, train_labels, test_feats, test_labels, lrs=protocol.attentive_lr,
                               wds=protocol.attentive_wd, heads=protocol.attentive_heads,
                               epochs=protocol.attentive_epochs, device=device,
                               standardize=protocol.attentive_standardize, **common)
    if name == "knn":
        return knn_probe(train_feats, train_labels, test_feats, test_labels, ks=protocol.knn_k,
                         temperatures=protocol.knn_t, **common)
    return linear_probe(train_feats, train_labels, test_feats, test_labels, lrs=protocol.linear_lr,
                        wds=protocol.linear_wd, epochs=protocol.linear_epochs,
                        batch_size=protocol.linear_batch_size, device=device, **common)
