"""Score a frozen encoder that was not trained here: ``evaluate(encoder_or_spec, benchmark)`` runs the benchmark's
probes on it (features cached as for every run) and returns an ordinary run record with ``origin: external``, so the
leaderboards, ``bench table`` and the HTML page show it as a row of its own, labelled with its ``name``. Given a run
folder of ``bench train`` instead, it is ``bench probe`` (:func:`bench.runner.probe_run`): one entrance for both."""

from __future__ import annotations

import re
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from bench.benchmarks import Benchmark, get_benchmark
from bench.errors import BenchError
from bench.records import (BenchmarkRef, DataRef, RunRecord, collect_env, collect_hardware, config_hash, git_sha,
                           new_run_id, probe_fields, write_record)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _architecture(spec: str) -> str:
    """``timm:vit_small_patch16_224.dino`` -> ``vit_small_patch16_224.dino``; a file spec -> its callable's name."""
    kind, _, rest = spec.partition(":")
    return rest.rsplit(":", 1)[-1] if kind not in ("timm", "torchvision", "hf") else Path(rest).name or rest


def resolve_encoder(encoder_or_spec: nn.Module | str, bench: Benchmark, weights: str | Path | None = None,
                    **load_kw: Any) -> tuple[nn.Module, dict]:
    """The frozen encoder to score on ``bench`` (a spec is loaded at the benchmark's resolution) and what the record
    says of it (``model``: spec, weights file + sha256, layout, preprocessing)."""
    from bench.external import ExternalEncoder, load_encoder
    from probes.features import weights_hash
    if isinstance(encoder_or_spec, str):
        encoder = load_encoder(encoder_or_spec, weights, img_size=bench.img_size, **load_kw)
    elif isinstance(encoder_or_spec, nn.Module):
        if weights is not None or any(v is not None for v in load_kw.values()):
            raise BenchError("weights / loading options apply to a model spec, not to an nn.Module given directly")
        encoder = encoder_or_spec.eval()
    else:
        raise BenchError(f"evaluate() takes a model spec or an nn.Module, got {type(encoder_or_spec).__name__}")
    if isinstance(encoder, ExternalEncoder):
        return encoder, dict(encoder.info)
    return encoder, {"spec": f"python:{type(encoder).__module__}.{type(encoder).__qualname__}",
                     "weights": {"sha256": weights_hash(encoder)}, "tokens": hasattr(encoder, "tokens")}


def external_config(info: dict) -> dict:
    """A record's ``config`` for an external encoder (its ``config_hash`` tells encoders apart)."""
    config = {"model": info["spec"], "model_kwargs": info.get("model_kwargs", {}),
              "weights_sha256": (info.get("weights") or {}).get("sha256"), "mean": info.get("mean"),
              "std": info.get("std")}
    if info.get("readout", "pooled") != "pooled":  # configs of pooled readouts keep the hash they always had
        config["readout"] = info["readout"]
    return config


def encoder_label(encoder_or_spec: nn.Module | str, name: str | None = None) -> str:
    """The record's method name and leaderboard label: ``name``, else the spec, else the module's class name."""
    label = name or (encoder_or_spec if isinstance(encoder_or_spec, str) else type(encoder_or_spec).__name__)
    if not re.fullmatch(r"[^\s|`<>]{1,80}( [^\s|`<>]{1,80})*", label):
        raise BenchError(f"--name {label!r}: use up to 80 printable characters per word, no | ` < >")
    return label


def _is_run_folder(x) -> bool:
    """A ``Path`` is always a run folder; a string is one when it names a directory (a spec never does)."""
    return isinstance(x, Path) or (isinstance(x, str) and Path(x).expanduser().is_dir())


def evaluate(encoder_or_spec: nn.Module | str | Path, benchmark: Benchmark | str | None = None, *,
             weights: str | Path | None = None, probes: tuple[str, ...] | None = None,
             results_dir: str | Path | None = None, name: str | None = None, data=None, data_root: str | None = None,
             cache_dir: str | None = None, imagenet_root: str | None = None, datasets_root: str | None = None,
             **load_kw: Any) -> RunRecord:
    """Probe a frozen encoder with ``benchmark``'s protocol; write the record under ``results_dir`` when given.

    ``encoder_or_spec``: a model spec for :func:`bench.external.load_encoder` (``timm:NAME``, ``torchvision:NAME``,
    ``hf:PATH``, ``module:callable``; ``weights`` and ``load_kw`` - ``weights_key``, ``weights_prefix``, ``mean``,
    ``std``, ``readout``, ``model_kwargs`` - go to it), any ``nn.Module`` mapping normalised images to ``(B, D)``
    (with ``tokens(x) -> (B, N, D)`` for the attentive probe), or a run folder of ``bench train`` (a ``Path``, or a
    string naming a directory: ``bench probe``; ``benchmark`` defaults to the one it was trained on). ``name``
    labels the leaderboard row (default: the spec, or the module's class name). An encoder without tokens gets
    no attentive score, with one warning saying so."""
    from bench.runner import load_benchmark_data, probe_run, run_benchmark_of
    from probes.evaluate import evaluate_encoder

    if _is_run_folder(encoder_or_spec):
        if weights is not None or name is not None or any(v is not None for v in load_kw.values()):
            raise BenchError("--weights / --name / loading options go with a model spec, not with a run folder")
        run_dir = Path(encoder_or_spec).expanduser()
        bench = get_benchmark(benchmark) if isinstance(benchmark, str) else \
            benchmark if benchmark is not None else run_benchmark_of(run_dir)
        return probe_run(run_dir, bench, results_dir=results_dir, data=data, probes=probes, data_root=data_root,
                         cache_dir=cache_dir, imagenet_root=imagenet_root, datasets_root=datasets_root)
    if benchmark is None:
        raise BenchError("evaluate() needs a benchmark (an id such as imagenette-mini-v1, or a Benchmark)")
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if bench.is_video:
        raise BenchError(f"{bench.id} holds clips: external encoders are scored on image benchmarks")
    start = time.perf_counter()
    encoder, info = resolve_encoder(encoder_or_spec, bench, weights, **load_kw)
    label = encoder_label(encoder_or_spec if isinstance(encoder_or_spec, str) else encoder, name)
    data = data or load_benchmark_data(bench, data_root, cache_dir, imagenet_root, datasets_root)
    if data.train.images.ndim != 4:
        raise BenchError(f"{bench.id} holds clips: external encoders are scored on image benchmarks")
    probes = tuple(probes or bench.probes)
    if "attentive" in probes and not hasattr(encoder, "tokens"):  # said once the inputs are known to be good
        warnings.warn(f"{label} has no tokens (patch tokens or feature-map cells): the attentive probe is skipped",
                      stacklevel=2)
    report = evaluate_encoder(encoder, data.train, data.eval, bench, probes=probes, cache_dir=cache_dir)
    config = external_config(info)
    record = RunRecord(
        run_id=new_run_id(label, 0), status="ok", method=label, backbone=_architecture(info["spec"]), recipe=None,
        benchmark=BenchmarkRef(name=bench.name, version=bench.version, spec_hash=bench.spec_hash()),
        data=DataRef(spec=bench.data, fingerprint=data.fingerprint), seed=0, config=config,
        config_hash=config_hash(config), git_sha=git_sha(REPO_ROOT), env=collect_env(), hardware=collect_hardware(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_time_s=time.perf_counter() - start, **probe_fields(report),
        images_seen=None, params=sum(p.numel() for p in encoder.parameters()), origin="external", model=info)
    if results_dir is not None:
        write_record(record, results_dir)
    return record
