"""``bench submit``: check a method plugin against the contract on one small batch, then train it with
the benchmark's budget (:func:`bench.config.budget_config`) for each seed, probe it, write the records and refresh the leaderboard.

The smoke step runs before anything is trained or written, so a broken plugin costs seconds and leaves
no record: it names the broken part (import/signature via the registry, then views, loss, gradients,
encoder export)."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.augment import ViewAugmenter, eval_transform
from bench.benchmarks import Benchmark
from bench.config import TrainConfig
from bench.errors import PluginError
from bench.records import RunRecord

SMOKE_BATCH = 8


def smoke_test(cfg: TrainConfig, images: torch.Tensor) -> None:
    """One forward/backward of ``cfg``'s method on ``SMOKE_BATCH`` uint8 images; PluginError names what breaks."""
    from bench.runner import build_method
    from methods.base import split_loss
    method = build_method(cfg)
    name = method.name or type(method).__name__
    batch = images[:SMOKE_BATCH]
    try:
        views = ViewAugmenter(method.views, cfg.img_size)(batch)
    except Exception as e:
        raise PluginError(f"method {name!r}: its views could not be built ({type(e).__name__}: {e})") from None
    method.train()
    try:
        out = method.training_loss(views)
    except Exception as e:
        raise PluginError(f"method {name!r}: training_loss raised {type(e).__name__}: {e}".splitlines()[0]) from None
    loss, _ = split_loss(out, name)
    if not torch.isfinite(loss):
        raise PluginError(f"method {name!r}: loss is {loss.item()} on the smoke batch (should be finite)")
    if not loss.requires_grad:
        raise PluginError(f"method {name!r}: the loss does not depend on any trainable parameter (detached?)")
    loss.backward()
    grads = [p.grad for p in method.backbone.parameters() if p.requires_grad]
    if not any(g is not None and bool(torch.isfinite(g).all()) and bool(g.abs().sum() > 0) for g in grads):
        raise PluginError(f"method {name!r}: no gradient reaches the backbone (is the encoder output detached "
                          f"or the backbone frozen?)")
    encoder = method.encoder
    dim = getattr(encoder, "embed_dim", None)
    if not isinstance(encoder, torch.nn.Module) or not isinstance(dim, int):
        raise PluginError(f"method {name!r}: encoder must be an nn.Module with an int embed_dim "
                          f"(got {type(encoder).__name__})")
    encoder.eval()
    with torch.no_grad():
        feats = encoder(eval_transform(batch, cfg.img_size))
    if not isinstance(feats, torch.Tensor) or tuple(feats.shape) != (len(batch), dim):
        got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise PluginError(f"method {name!r}: encoder returns {got} for {len(batch)} images, "
                          f"expected ({len(batch)}, embed_dim={dim})")
    if not torch.isfinite(feats).all():
        raise PluginError(f"method {name!r}: encoder features are not finite")


def submit(cfg: TrainConfig, benchmark: Benchmark, seeds: list[int], *, results_dir: str | Path = "results",
           leaderboards_dir: str | Path = "leaderboards", runs_dir: str | Path = "runs", recipe: str | None = None,
           progress: bool = True, data_root: str | None = None, cache_dir: str | None = None,
           imagenet_root: str | None = None) -> list[RunRecord]:
    """Smoke-test, then train + probe + record for every seed, then rewrite the leaderboard (all formats).
    ``cfg``: typically :func:`bench.config.budget_config` (the method's recipe on the benchmark's budget)."""
    from bench.leaderboard import FORMATS, write_leaderboard
    from bench.runner import check_config, load_benchmark_data, run_benchmark
    check_config(cfg)  # the plugin imports and takes its options, before any data is looked up
    data = load_benchmark_data(benchmark, data_root, cache_dir, imagenet_root)
    smoke_test(cfg, data.train.images)
    records = [run_benchmark(cfg.model_copy(update={"seed": s}), benchmark, results_dir=results_dir,
                             runs_dir=runs_dir, recipe=recipe, data=data, progress=progress, cache_dir=cache_dir)
               for s in seeds]
    write_leaderboard(benchmark, results_dir, leaderboards_dir, formats=FORMATS)  # checks every record first
    return records
