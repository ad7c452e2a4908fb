"""``bench perf --only pipeline``: the harness's training step against a conventional data pipeline, side by side.

Both train the same method (default SimCLR with its recipe: resnet18, LARS, precision), batch and image size on
the same JPEG files (a synthetic tree of ``opts.pipeline_source_px`` px photos, as many as the timed steps need):

- **harness**: ``bench.trainer.fit`` (Lightning) on the split decoded once into the uint8 cache, with the batched
  augmentation of :mod:`bench.augment` on the training device;
- **harness, streamed**: the same on the streaming path (:mod:`bench.data.streaming`, what a split over the cache
  budget gets): the JPEGs decoded per batch in DataLoader workers, each view's crop from the full image;
- **conventional**: what lightly and solo-learn do: ``torchvision.datasets.ImageFolder`` with per-sample
  ``torchvision.transforms.v2`` (the same RandomResizedCrop, flip, colour jitter and grayscale as the method's
  views) in DataLoader worker processes (one per usable core), feeding the same model step (the bare loop of
  :func:`bench.perf.measure._bare`: loss, backward, optimiser, lr schedule).

The ratio harness / conventional images/s is the target (>= 1.2); ``streamed_vs_conventional`` is reported beside
it. Larger source JPEGs (``--pipeline-source-px``, e.g. 256 as an ImageNet cache) make the conventional pipeline's
per-epoch decode cost more; at 64 px the model step is nearly all of both. ``profile`` says where the harness's step goes
on this device: the batched augmentation alone against the whole step.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch


def conventional_transform(spec, mean, std):
    """Per-sample torchvision v2 ops of one ViewSpec (PIL in, normalised float tensor out), the order of
    SimCLR's and solo-learn's pipelines."""
    from torchvision.transforms import v2
    b, c, s, h = spec.jitter
    ops = [v2.RandomResizedCrop(spec.size, scale=spec.scale, ratio=spec.ratio, antialias=True)]
    if spec.flip_p > 0:
        ops.append(v2.RandomHorizontalFlip(spec.flip_p))
    if spec.jitter_p > 0:
        ops.append(v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=spec.jitter_p))
    if spec.gray_p > 0:
        ops.append(v2.RandomGrayscale(spec.gray_p))
    if spec.blur_p > 0:
        k = max(3, (spec.size // 10) | 1)
        ops.append(v2.RandomApply([v2.GaussianBlur(k, spec.blur_sigma)], p=spec.blur_p))
    if spec.solarize_p > 0:
        ops.append(v2.RandomSolarize(128, p=spec.solarize_p))
    ops += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


class MultiView:
    """One transform per view, applied to the same image (the usual multi-crop wrapper)."""

    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        return [t(img) for t in self.transforms]


def conventional_loader(root: Path, specs, batch_size: int, workers: int, seed: int):
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from bench.augment import IMAGENET_MEAN, IMAGENET_STD
    ds = ImageFolder(str(root), transform=MultiView([conventional_transform(s, IMAGENET_MEAN, IMAGENET_STD)
                                                     for s in specs]))
    return DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(seed))


def _augment_ms(opts, cfg, images, labels) -> float:
    """ms per batch of the batched augmentation alone (after one warm-up batch), on the training device."""
    from bench.perf.measure import time_augmentation
    batches = opts.warmup + opts.steps - 1
    return 1000 * time_augmentation(cfg, images, labels, batches)[0] / batches


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of its children that have exited."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def pipeline_section(opts) -> dict:
    from bench.data import streaming
    from bench.data.imagefolder import load_imagefolder
    from bench.data.parallel import decode_workers
    from bench.perf.data_path import synthetic_imagenet_tree
    from bench.perf.measure import _bare, _device, _harness, train_config
    from methods import get_method

    cfg = train_config(opts)
    device = _device()
    workers = decode_workers()
    specs = [s.with_size(cfg.img_size) for s in get_method(cfg.method).views]
    n = (opts.warmup + opts.steps) * opts.batch_size
    harness, conventional = [], []
    with tempfile.TemporaryDirectory(prefix="bench-perf-pipeline-") as tmp:
        side = opts.pipeline_source_px
        split = synthetic_imagenet_tree(Path(tmp) / "train", n, seed=opts.seed, sizes=((side, side),))
        data = load_imagefolder(split, cache_dir=Path(tmp) / "cache")  # decoded once, as the harness does
        images, labels = data.images, data.labels
        streaming.set_cache_budget(0)
        try:
            streamed = load_imagefolder(split, cache_dir=Path(tmp) / "stream").images
        finally:
            streaming.set_cache_budget(None)
        augment_ms = _augment_ms(opts, cfg, images, labels)
        cpu = {"harness": [], "conventional": [], "streamed": []}
        harness_streamed = []
        for _ in range(max(1, opts.repeats)):  # alternate, so background load hits both alike
            t = _cpu_s()
            loader = conventional_loader(split, specs, cfg.batch_size, workers, cfg.seed)
            conventional.append(_bare(opts, cfg, images, labels, loader=loader,
                                      to_views=lambda views: [v.to(device, non_blocking=True) for v in views]))
            del loader  # stops (and reaps) its worker processes before the harness runs
            cpu["conventional"].append(_cpu_s() - t)
            t = _cpu_s()
            harness.append(_harness(opts, cfg, images, labels))
            cpu["harness"].append(_cpu_s() - t)
            t = _cpu_s()
            harness_streamed.append(_harness(opts, cfg, streamed, labels))
            cpu["streamed"].append(_cpu_s() - t)
    steps = opts.steps
    h, c, hs = min(harness), min(conventional), min(harness_streamed)
    return {"method": cfg.method, "backbone": cfg.backbone, "backbone_kwargs": cfg.backbone_kwargs,
            "img_size": cfg.img_size, "source_px": opts.pipeline_source_px, "batch_size": cfg.batch_size,
            "precision": cfg.precision, "timed_steps": steps, "conventional_workers": workers,
            "harness_s": harness, "conventional_s": conventional, "streamed_s": harness_streamed,
            "streamed_images_per_s": steps * cfg.batch_size / hs, "streamed_vs_conventional": c / hs,
            "harness_images_per_s": steps * cfg.batch_size / h, "conventional_images_per_s": steps * cfg.batch_size / c,
            "harness_step_ms": 1000 * h / steps, "conventional_step_ms": 1000 * c / steps,
            # CPU seconds of this process and its (reaped) workers per image over the whole run, warm-up and setup
            # included: the work each pipeline does, whatever share of busy cores the scheduler gave it
            "cpu_s_per_image": {k: min(v) / n for k, v in cpu.items()},
            "profile": {"augment_ms_per_batch": augment_ms, "augment_share_of_step": augment_ms / (1000 * h / steps)},
            "harness_vs_conventional": c / h}
