"""``bench perf --only data``: the data path at ImageNet scale, on data the benchmark makes itself.

- ``decode``: images/s decoding a synthetic ImageNet-like tree (``opts.decode_images`` full-size JPEGs,
  500 x 375 and 375 x 500, 10 classes) into the cache at ``opts.decode_size`` px, with 1 worker process and with
  one per usable core (:func:`bench.data.parallel.decode_workers`); both must give the same rows.
- ``cache_load``: the time to open a cached split of ``opts.cache_rows[0]`` and of ``opts.cache_rows[1]`` rows
  (the check on load: header, size, sample checksum; then the memory map), beside the time the whole-file
  sha256 would take (what every load cost before), to show the first flat and the second growing with the size.
- ``streaming``: the same tree on the streaming path (:mod:`bench.data.streaming`): images/s packing it, decoding
  evaluation rows, and making two training views per image from the full images; its rows must equal the cache's.
- plus :func:`bench.perf.measure.data_pipeline` (uint8 cache -> batched views).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

#: (width, height) of the synthetic photos: ImageNet's most common sizes, landscape and portrait
PHOTO_SIZES = ((500, 375), (375, 500))


def synthetic_imagenet_tree(split_dir: Path, n: int, classes: int = 10, seed: int = 0,
                            sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES) -> Path:
    """``split_dir/<class>/<i>.JPEG``: ``n`` smooth random colour fields with fine noise, JPEG quality 90, so
    that file sizes (~60 kB at 500 x 375) and decode cost are close to ImageNet photos'; image i is
    ``sizes[i % len(sizes)]`` (width, height) and in class ``i % classes``."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        coarse = Image.fromarray(rng.integers(0, 256, (max(2, h // 25), max(2, w // 25), 3), dtype=np.uint8))
        coarse = coarse.resize((w, h), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        folder = split_dir / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:06d}.JPEG", quality=90)
    return split_dir


def decode_speed(opts, root: Path, split: Path) -> dict:
    """Images/s decoding the tree ``split`` into a fresh cache with 1 worker and with one per usable core."""
    import torch

    from bench.data.imagefolder import load_imagefolder
    from bench.data.parallel import decode_workers

    load_imagefolder(split, size=opts.decode_size, cache_dir=root / "warm", decode_workers=1)  # page cache, imports
    workers = sorted({1, decode_workers()})
    seconds, images = {}, {}
    for w in workers:
        t = time.perf_counter()
        images[w] = load_imagefolder(split, size=opts.decode_size, cache_dir=root / f"cache{w}", decode_workers=w)
        seconds[w] = time.perf_counter() - t
    same = all(torch.equal(images[1].images, images[w].images) and images[1].fingerprint == images[w].fingerprint
               for w in workers)
    jpeg_kb = sum(f.stat().st_size for f in split.rglob("*.JPEG")) / opts.decode_images / 1024
    n = opts.decode_images
    return {"images": n, "source_px": [list(s) for s in PHOTO_SIZES], "jpeg_kb": jpeg_kb, "size": opts.decode_size,
            "workers": workers, "seconds": {str(w): s for w, s in seconds.items()},
            "images_per_s": {str(w): n / s for w, s in seconds.items()}, "identical_rows": same,
            "decode_speedup": seconds[1] / seconds[workers[-1]]}


def streaming_speed(opts, root: Path, split: Path, batch_size: int = 64) -> dict:
    """The streaming path on the tree ``split`` (decoded already into ``root/cache1`` by :func:`decode_speed`):
    images/s packing it, decoding evaluation rows per batch, and making SimCLR's two training views per image
    (RandomResizedCrop from the full image) in DataLoader workers; whether its rows equal the cached ones."""
    import torch

    from bench.augment import ViewSpec
    from bench.data import streaming
    from bench.data.imagefolder import load_imagefolder
    from bench.data.parallel import decode_workers
    from bench.trainer import train_loader

    n = opts.decode_images
    streaming.set_cache_budget(0)
    try:
        t = time.perf_counter()
        streamed = load_imagefolder(split, size=opts.decode_size, cache_dir=root / "stream")
        pack_s = time.perf_counter() - t
    finally:
        streaming.set_cache_budget(None)
    cached = load_imagefolder(split, size=opts.decode_size, cache_dir=root / "cache1")
    t = time.perf_counter()
    rows = torch.cat(list(streaming.iter_batches(streamed.images, batch_size)))
    eval_s = time.perf_counter() - t
    views = [ViewSpec().with_size(opts.img_size)] * 2
    loader = train_loader(streamed.images, streamed.labels, min(batch_size, n), opts.seed, views=views)
    t = time.perf_counter()
    steps = sum(1 for _ in loader)
    train_s = time.perf_counter() - t
    return {"workers": decode_workers(), "pack_images_per_s": n / pack_s, "eval_images_per_s": n / eval_s,
            "train_images_per_s": steps * min(batch_size, n) / train_s, "train_view_px": opts.img_size,
            "identical_rows": torch.equal(rows, cached.images), "same_fingerprint": streamed.fingerprint == cached.fingerprint}


def cache_load_time(opts, root: Path, repeats: int = 5) -> dict:
    """Seconds to open cached splits of two sizes (best of ``repeats``), and to hash each whole file once."""
    from bench.data.cache import file_sha256, load_cached

    rng = np.random.default_rng(opts.seed)
    rows = rng.integers(0, 256, (256, 3, 64, 64), dtype=np.uint8)

    def write(n: int):
        def decode(npy: Path) -> str:
            from bench.data.cache import write_npy

            def fill(arr):
                for i in range(0, n, len(rows)):
                    arr[i:i + len(rows)] = rows[:n - i]
                return f"synthetic-{n}"
            return write_npy(npy, (n, 3, 64, 64), fill)
        return decode

    out = []
    for n in opts.cache_rows:
        info = {"n": n}
        images, meta = load_cached(root, "image", f"perf-{n}", info, write(n))  # written (and hashed) once
        nbytes = meta["npy_bytes"]
        del images
        loads = []
        for _ in range(repeats):
            t = time.perf_counter()
            images, _ = load_cached(root, "image", f"perf-{n}", info, write(n))
            loads.append(time.perf_counter() - t)
            del images
        t = time.perf_counter()
        file_sha256(root / "images" / f"perf-{n}.npy")
        out.append({"rows": n, "mib": nbytes / 2**20, "load_s": min(loads), "full_sha256_s": time.perf_counter() - t})
    small, large = out[0], out[-1]
    return {"entries": out, "size_ratio": large["mib"] / small["mib"], "load_large_vs_small": large["load_s"] / small["load_s"]}


def data_section(opts) -> dict:
    """The ``data`` section: decode speed, cache load time against size, and the views pipeline."""
    from bench.perf.measure import data_pipeline

    report = data_pipeline(opts)
    with tempfile.TemporaryDirectory(prefix="bench-perf-data-") as tmp:
        split = synthetic_imagenet_tree(Path(tmp) / "train", opts.decode_images, seed=opts.seed)
        report["decode"] = decode_speed(opts, Path(tmp), split)
        report["streaming"] = streaming_speed(opts, Path(tmp), split)
    with tempfile.TemporaryDirectory(prefix="bench-perf-cache-") as tmp:
        report["cache_load"] = cache_load_time(opts, Path(tmp))
    report["decode_speedup"] = report["decode"]["decode_speedup"]
    report["load_large_vs_small"] = report["cache_load"]["load_large_vs_small"]
    return report
