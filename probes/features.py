"""Frozen-feature extraction (eval mode, resize + centre crop, no augmentation), cached on disk.

The cache key hashes the encoder's weights and architecture (its repr), the preprocessing and the data key (split +
fingerprint), so a changed encoder, resolution or dataset can never hit a stale entry.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn

from bench import distributed
from bench.augment import eval_transform
from bench.backbones import Backbone
from bench.data.streaming import iter_batches
from bench.io import atomic_torch_save

FEATURE_CACHE_VERSION = 3  # 3: entries carry a sha256 of their bytes


def tensor_sha256(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    return hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def weights_hash(module: nn.Module) -> str:
    """sha256 over the module's state_dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _tokens(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Every output token of the encoder: a :class:`Backbone` includes its prefix tokens ([CLS]), a
    plugin's own encoder gives whatever its ``tokens(x)`` returns."""
    return encoder.tokens(x, prefix=True) if isinstance(encoder, Backbone) else encoder.tokens(x)


@torch.inference_mode()
def _extract(encoder: nn.Module, images: torch.Tensor, img_size: int, crop_pct: float, batch_size: int,
             device: torch.device, tokens: bool) -> torch.Tensor:
    was_training = encoder.training
    encoder.eval().to(device)
    cuda = device.type == "cuda"
    out = []
    try:
        for batch in iter_batches(images, batch_size):
            x = eval_transform(batch.to(device, non_blocking=True), img_size, crop_pct)
            if cuda and x.ndim == 4:  # images; clips (B, T, 3, H, W) have no channels-last layout
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                out.append(_tokens(encoder, x).half().cpu() if tokens else encoder(x).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out)


def extract_features(encoder: nn.Module, images: torch.Tensor, *, img_size: int, crop_pct: float = 1.0,
                     batch_size: int = 256, device=None, cache_dir: str | Path | None = None,
                     data_key: str | None = None, tokens: bool = False) -> torch.Tensor:
    """(N, D) float32 CPU features of uint8 (N, 3, S, S) images, or with ``tokens=True`` the
    encoder's (N, T, D) patch tokens (float16, for the attentive probe); cached when cache_dir and
    data_key are given. Inside an initialised process group (world size > 1) every rank must call it: each
    extracts its share and all get the full (N, ...) features in the original order."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    path, cached = None, None
    if cache_dir is not None and data_key is not None:
        kind = "all-tokens" if tokens else "pooled"  # "all-tokens": prefix tokens included (older caches: "tokens")
        # the module's repr tells apart encoders whose weights match but whose forward differs
        # (e.g. a ViT pooling its class token vs averaging: different final norm layers)
        arch = hashlib.sha256(f"{type(encoder).__qualname__}:{encoder!r}".encode()).hexdigest()[:16]
        key = hashlib.sha256(f"v{FEATURE_CACHE_VERSION}|{weights_hash(encoder)}|{arch}|{img_size}|{crop_pct}|{data_key}|{kind}"
                             .encode()).hexdigest()[:32]
        path = Path(cache_dir) / "features" / f"{key}.pt"
        if path.is_file():
            try:
                entry = torch.load(path, map_location="cpu", weights_only=True)
                feats = entry["feats"]
                if feats.ndim != (3 if tokens else 2) or len(feats) != len(images):
                    warnings.warn(f"feature cache {path} has the wrong shape; recomputing", stacklevel=2)
                elif tensor_sha256(feats) != entry["sha256"]:
                    warnings.warn(f"feature cache {path} fails its checksum (corrupt); recomputing", stacklevel=2)
                else:
                    cached = feats
            except Exception as e:  # noqa: BLE001 - any unreadable cache entry is recomputed
                warnings.warn(f"feature cache {path} is unreadable ({type(e).__name__}); recomputing", stacklevel=2)
    if distributed.all_true(cached is not None):  # under DDP every rank must take the same branch
        return cached
    if distributed.is_distributed() and len(images) >= distributed.world_size():
        # each rank extracts a contiguous shard; the shards are gathered in rank order, so every image appears
        # exactly once, in its original position (no sampler padding, no duplicates). Rank 0 writes the cache.
        start, stop = distributed.shard_bounds(len(images))
        feats = distributed.gather_uneven(_extract(encoder, images[start:stop], img_size, crop_pct, batch_size,
                                                   device, tokens))
        write = distributed.rank() == 0
    else:
        feats = _extract(encoder, images, img_size, crop_pct, batch_size, device, tokens)
        write = True
    if path is not None and write:
        atomic_torch_save({"feats": feats, "sha256": tensor_sha256(feats)}, path)
    return feats
