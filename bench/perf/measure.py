"""The measurements of ``bench perf``; each returns a plain dict of numbers (seconds, items per second).

- ``train_step``: images/s of the harness's training step (``bench.trainer.fit``: Lightning + SSLModule with its
  online probe, monitors, logging and checkpointing) against a bare PyTorch loop running the same method,
  optimiser, lr schedule and batched augmentation on the same data. Only steps after the warm-up are timed, from
  the start of the first timed step to the end of the last (both sides include the batch fetches in between).
- ``data_pipeline``: the uint8 cache -> sampler -> batched kornia views path alone.
- ``linear_grid``: wall time of ``probes.linear.train_linear_grid`` with 1 and with 20 (lr, wd) members.
- ``probe_costs``: one benchmark's whole probe protocol on a random-init encoder (the benchmark's budget backbone):
  seconds of feature extraction (pooled features + tokens) against each probe's grid (k-NN, linear, attentive,
  few-shot draws) and the label-free estimators, as ``probes.evaluate.evaluate_encoder`` times them for records.
- ``knn``: faiss (``probes.knn.knn_search``) against a brute-force torch k-NN (chunked matmul + topk).
"""

from __future__ import annotations

import contextlib

import tempfile
import time
from dataclasses import dataclass, replace

import torch

from bench.backbones import is_video_backbone
from bench.config import TrainConfig


@dataclass
class PerfOptions:
    method: str = "simclr"
    backbone: str | None = None     # None: the method's recipe
    stem: str | None = None
    precision: str | None = None    # None: the recipe's (e.g. 32-true to time fp32 where a CPU lacks bf16)
    img_size: int = 32
    batch_size: int = 256
    warmup: int = 3                 # untimed steps (allocator, kernels, Lightning's first-step setup)
    steps: int = 10                 # timed steps
    repeats: int = 1                # harness and bare loop alternate this many times; the best of each is kept
    progress_bar: bool = False      # time the harness with its progress bar (what `bench train` shows)
    data_batches: int = 20
    decode_images: int = 200        # synthetic 500 x 375 JPEGs decoded by the data section
    decode_size: int = 256          # ... into a cache at this size (ImageNet's)
    cache_rows: tuple[int, int] = (2_000, 16_000)  # two cached splits (3 x 64 x 64 rows) whose load times are compared
    pipeline_source_px: int = 64    # side of the JPEGs both pipelines of the pipeline section read (imagenette64's)
    probe_samples: int = 10_000
    probe_dim: int = 512
    probe_classes: int = 10
    probe_epochs: int = 5
    probe_benchmark: str = "imagenette-mini-v1"  # whose probes probe_costs times (embedded data: always there)
    probe_images: int = 0           # a fixed draw of at most this many images per split (0: all)
    knn_train: int = 50_000
    knn_queries: int = 50_000
    knn_dim: int = 384
    knn_k: int = 20
    frames: int = 8                 # clip length when the backbone is a video one (video_vit_*)
    seed: int = 0


#: ``bench perf --quick``: about a minute on 2 CPU cores
QUICK = dict(batch_size=64, warmup=2, steps=4, data_batches=5, probe_samples=2_000, probe_epochs=2,
             knn_train=5_000, knn_queries=5_000, decode_images=48, cache_rows=(1_000, 8_000), probe_images=500)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_config(opts: PerfOptions, epochs: int = 1) -> TrainConfig:
    from bench.config import make_config, recipe_named_like
    return make_config(recipe_named_like(opts.method), method=opts.method, backbone=opts.backbone,
                       img_size=opts.img_size, batch_size=opts.batch_size, epochs=epochs, seed=opts.seed,
                       backbone_kwargs={"stem": opts.stem} if opts.stem else None, precision=opts.precision)


def _fake_data(opts: PerfOptions, cfg: TrainConfig, n: int, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images (n, 3, S, S), or clips (n, frames, 3, S, S) for a video backbone, and labels."""
    g = torch.Generator().manual_seed(opts.seed)
    shape = (n, opts.frames, 3) if is_video_backbone(cfg.backbone) else (n, 3)
    images = torch.randint(0, 256, (*shape, opts.img_size, opts.img_size), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, classes, (n,), generator=g)


def _harness(opts: PerfOptions, cfg: TrainConfig, images, labels) -> float:
    """Seconds for ``opts.steps`` steps of ``bench.trainer.fit`` after ``opts.warmup`` untimed ones."""
    from lightning.pytorch.callbacks import Callback

    from bench.runner import build_method
    from bench.trainer import fit

    device = _device()

    class StepTimer(Callback):
        start = end = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == opts.warmup:
                _sync(device)
                StepTimer.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == opts.warmup + opts.steps - 1:
                _sync(device)
                StepTimer.end = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp:
        fit(build_method(cfg), images, labels, cfg, tmp, num_classes=int(labels.max()) + 1,
            progress=opts.progress_bar, callbacks=[StepTimer()], log=None)
    return StepTimer.end - StepTimer.start


def _bare(opts: PerfOptions, cfg: TrainConfig, images, labels, loader=None, to_views=None) -> float:
    """The same step without Lightning: augment, loss, backward, optimiser + lr schedule, EMA hook. ``loader`` and
    ``to_views(batch)`` (both or neither) replace the uint8 sampler and the batched augmentation: another data
    pipeline in front of the same model step (``bench perf --only pipeline``)."""
    from bench.augment import ViewAugmenter
    from bench.runner import build_method
    from bench.cpu_bf16 import FastCPUBF16
    from bench.trainer import SSLModule, _precision, step_seed, train_loader, uses_channels_last, widens_cpu_bf16
    from methods.base import split_loss

    device = _device()
    method = build_method(cfg).to(device)
    channels_last = uses_channels_last(cfg, images)
    if channels_last:
        method.to(memory_format=torch.channels_last)
    method.train()
    if loader is None:
        augment = ViewAugmenter(method.views, cfg.img_size).to(device)
        loader = train_loader(images, labels, cfg.batch_size, cfg.seed)

        def to_views(x):
            return augment(x.to(device, non_blocking=True))
    # the harness's optimiser and schedule (LARS / SGD / AdamW, warm-up + cosine), without the online probe
    bare_cfg = cfg.model_copy(update={"online_probe": False})
    opt_cfg = SSLModule(method, bare_cfg, steps_per_epoch=len(loader)).configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    bf16 = _precision(cfg) == "bf16-mixed"
    total = len(loader) * cfg.epochs
    start = None
    # what fit does for bf16 on a CPU without native bf16 (forward and backward through the fp32 kernels)
    with FastCPUBF16() if widens_cpu_bf16(cfg) else contextlib.nullcontext():
        for step, (x, _) in enumerate(loader):
            if step == opts.warmup:
                _sync(device)
                start = time.perf_counter()
            torch.manual_seed(step_seed(cfg.seed, step))
            views = to_views(x)
            if channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = split_loss(method.training_loss(views), method.name)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            method.on_after_backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            method.on_step_end(step, total)
            if step == opts.warmup + opts.steps - 1:
                break
    _sync(device)
    return time.perf_counter() - start


def train_step(opts: PerfOptions) -> dict:
    cfg = train_config(opts)
    images, labels = _fake_data(opts, cfg, (opts.warmup + opts.steps) * opts.batch_size)
    harness, bare = [], []
    for _ in range(max(1, opts.repeats)):  # alternate, so background load hits both alike
        bare.append(_bare(opts, cfg, images, labels))
        harness.append(_harness(opts, cfg, images, labels))
    n = opts.steps * opts.batch_size
    h, b = min(harness), min(bare)
    return {"method": cfg.method, "backbone": cfg.backbone, "backbone_kwargs": cfg.backbone_kwargs,
            "img_size": cfg.img_size, "batch_size": cfg.batch_size, "precision": cfg.precision,
            "views_per_image": _views(cfg), "timed_steps": opts.steps,
            "harness_s": harness, "bare_s": bare, "harness_images_per_s": n / h, "bare_images_per_s": n / b,
            "harness_step_ms": 1000 * h / opts.steps, "bare_step_ms": 1000 * b / opts.steps,
            "harness_vs_bare": b / h}


def _views(cfg: TrainConfig) -> int:
    from methods import get_method
    return len(get_method(cfg.method).views)


def time_augmentation(cfg: TrainConfig, images, labels, batches: int) -> tuple[float, int, int]:
    """The batched augmentation alone on the training device, over ``batches`` sampler batches after one warm-up
    batch: (seconds, views made, specs per image)."""
    from bench.augment import ViewAugmenter
    from bench.trainer import train_loader
    from methods import get_method

    device = _device()
    augment = ViewAugmenter(get_method(cfg.method).views, cfg.img_size).to(device)
    start, views = None, 0
    for i, (x, _) in zip(range(batches + 1), train_loader(images, labels, cfg.batch_size, cfg.seed)):
        if i == 1:  # batch 0 warms up
            _sync(device)
            start = time.perf_counter()
        out = augment(x.to(device, non_blocking=True))
        if i >= 1:
            views += sum(len(v) for v in out)
    _sync(device)
    return time.perf_counter() - start, views, len(augment.specs)


def data_pipeline(opts: PerfOptions) -> dict:
    """uint8 images -> epoch sampler batches -> batched kornia views on the training device."""
    cfg = train_config(opts)
    images, labels = _fake_data(opts, cfg, (opts.data_batches + 1) * opts.batch_size)
    elapsed, views, per_image = time_augmentation(cfg, images, labels, opts.data_batches)
    return {"batches": opts.data_batches, "batch_size": cfg.batch_size, "views_per_image": per_image,
            "seconds": elapsed, "images_per_s": opts.data_batches * cfg.batch_size / elapsed,
            "views_per_s": views / elapsed}


def linear_grid(opts: PerfOptions) -> dict:
    """train_linear_grid with 1 member vs 20 (5 lrs x 4 wds), same features, epochs and batches."""
    from probes.linear import train_linear_grid

    device = _device()
    g = torch.Generator().manual_seed(opts.seed)
    x = torch.randn(opts.probe_samples, opts.probe_dim, generator=g).to(device)
    y = torch.randint(0, opts.probe_classes, (opts.probe_samples,), generator=g).to(device)
    lrs20 = torch.tensor([0.01, 0.03, 0.1, 0.3, 1.0]).repeat_interleave(4)
    wds20 = torch.tensor([0.0, 1e-3, 1e-2, 1e-1]).repeat(5)
    grids = {"grid1": (lrs20[:1], wds20[:1]), "grid20": (lrs20, wds20)}
    train_linear_grid(x[:512], y[:512], *grids["grid20"], opts.probe_classes, epochs=1)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in grids}
    for _ in range(max(1, opts.repeats)):
        for name, (lrs, wds) in grids.items():
            _sync(device)
            t = time.perf_counter()
            train_linear_grid(x, y, lrs, wds, opts.probe_classes, epochs=opts.probe_epochs, seed=opts.seed)
            _sync(device)
            times[name].append(time.perf_counter() - t)
    t1, t20 = min(times["grid1"]), min(times["grid20"])
    return {"samples": opts.probe_samples, "dim": opts.probe_dim, "classes": opts.probe_classes,
            "epochs": opts.probe_epochs, "grid1_s": t1, "grid20_s": t20, "grid20_vs_grid1": t20 / t1}


def probe_costs(opts: PerfOptions) -> dict:
    """Seconds of extraction vs each probe of ``opts.probe_benchmark`` (every probe it lists, plus few-shot),
    random-init encoder seeded by ``opts.seed``, no feature cache; ``probes_vs_extraction``: all probes and the
    estimators together over the extraction (pooled features and, for the attentive probe, tokens)."""
    from bench.backbones import create_backbone
    from bench.benchmarks import get_benchmark
    from bench.runner import load_benchmark_data
    from probes.estimators import fixed_rows
    from probes.evaluate import evaluate_encoder

    bench = get_benchmark(opts.probe_benchmark)
    data = load_benchmark_data(bench)
    splits = [data.train, data.eval]
    if opts.probe_images:
        splits = [replace(s, images=s.images[rows], labels=s.labels[rows], fingerprint=f"{s.fingerprint}[{len(rows)}]")
                  for s in splits for rows in [fixed_rows(len(s), opts.probe_images, opts.seed)]]
    torch.manual_seed(opts.seed)
    encoder = create_backbone(bench.budget["backbone"], bench.img_size, **bench.budget.get("backbone_kwargs", {}))
    probes = tuple(dict.fromkeys([*bench.probes, "fewshot"]))
    report = evaluate_encoder(encoder, *splits, bench, probes=probes, device=_device(), log=None)
    times = report["probe_time_s"]
    extraction = times.get("features", 0.0) + times.get("tokens", 0.0)
    probing = sum(v for k, v in times.items() if k not in ("features", "tokens"))
    return {"benchmark": bench.id, "encoder": f"random-init {bench.budget['backbone']}",
            "images": {s.split: len(s) for s in splits}, "seconds": times, "extraction_s": extraction,
            "probes_s": probing, "probes_vs_extraction": probing / extraction, "scores": report["scores"],
            "estimators": report["estimators"]}


def probe_section(opts: PerfOptions) -> dict:
    """``bench perf --only probe``: the linear grid's 1 vs 20 members, and :func:`probe_costs`."""
    from bench.benchmarks import get_benchmark
    get_benchmark(opts.probe_benchmark)  # an unknown id fails before anything is timed
    return {**linear_grid(opts), **probe_costs(opts)}


def knn(opts: PerfOptions) -> dict:
    from probes.knn import faiss, knn_search, torch_knn_search
    if faiss is None:
        from bench.errors import ConfigError
        raise ConfigError("perf section 'knn' compares faiss with torch, and faiss is not installed (pip install faiss-cpu)")

    g = torch.Generator().manual_seed(opts.seed)
    train = torch.randn(opts.knn_train, opts.knn_dim, generator=g)
    query = torch.randn(opts.knn_queries, opts.knn_dim, generator=g)
    knn_search(train[:256], query[:64], opts.knn_k)  # warm-up (faiss thread pool)
    torch_knn_search(train[:256], query[:64], opts.knn_k, device="cpu")
    t = time.perf_counter()
    f_sims, f_idx = knn_search(train, query, opts.knn_k)
    t_faiss = time.perf_counter() - t
    t = time.perf_counter()
    b_sims, b_idx = torch_knn_search(train, query, opts.knn_k, device="cpu")
    t_brute = time.perf_counter() - t
    return {"train": opts.knn_train, "queries": opts.knn_queries, "dim": opts.knn_dim, "k": opts.knn_k,
            "faiss_s": t_faiss, "brute_force_s": t_brute, "faiss_speedup": t_brute / t_faiss,
            # sanity: both find the same nearest neighbour (random data: ties are vanishingly rare)
            "top1_agreement": float((f_idx[:, 0] == b_idx[:, 0]).float().mean()),
            "max_sim_diff": float((f_sims - b_sims).abs().max())}
