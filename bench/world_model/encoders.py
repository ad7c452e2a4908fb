"""Frame encoders for world models: uint8 frames (..., 3, S, S) -> per-frame tokens (..., N, D).

- :class:`BackboneFrameEncoder` wraps any *frozen* backbone (image ViT, CNN, or a video ViT fed the
  frame repeated over one tubelet, as V-JEPA 2 embeds images). Its patch tokens (or CNN feature-map
  cells) are average-pooled onto a ``grid x grid`` map (N = grid**2 tokens; grid=1 = one pooled
  vector) and layer-normed without affine (V-JEPA 2-AC predicts layer-normed encoder features).
- :class:`PixelFrameEncoder` is the pixel-space baseline: the frame area-downsampled to
  ``size x size``, cut into the same ``grid x grid`` cells, each cell's pixels (scaled to [-1, 1])
  one token.

``load_frame_encoder("random" | "pixels" | RUN_DIR)`` builds one; ``encoder.key`` identifies it (weights
hash + preprocessing) for caches.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench.augment import eval_transform
from bench.errors import ConfigError

#: the random-init encoder of ``--encoder random``: the random_vit recipe's backbone (vit_tiny, patch 4, 32 px)
RANDOM_VIT = dict(name="vit_tiny", img_size=32, patch_size=4, class_token=False, global_pool="avg")


def _weights_hash(module: nn.Module) -> str:
    from probes.features import weights_hash  # one definition of "same weights" for every cache
    return weights_hash(module)


class FrameEncoder(nn.Module):
    """Base: ``forward(frames uint8 (..., 3, S, S)) -> float32 (..., N, D)``; ``tokens_per_frame`` = N,
    ``embed_dim`` = D, ``label`` (short, for tables), ``key`` (cache identity)."""

    tokens_per_frame: int
    embed_dim: int
    label: str

    @property
    def key(self) -> str:
        raise NotImplementedError

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        out = torch.cat([self.encode(flat[i:i + batch_size]) for i in range(0, len(flat), batch_size)])
        return out.reshape(*lead, self.tokens_per_frame, self.embed_dim)


class BackboneFrameEncoder(FrameEncoder):
    def __init__(self, backbone: nn.Module, img_size: int, grid: int = 2, label: str = "encoder"):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.img_size, self.grid, self.label = img_size, grid, label
        self.tokens_per_frame, self.embed_dim = grid * grid, backbone.embed_dim
        self.video = hasattr(backbone, "tubelet")

    @property
    def key(self) -> str:
        arch = f"{type(self.backbone.model).__qualname__}:{self.backbone!r}"
        return hashlib.sha256(f"backbone|{_weights_hash(self.backbone)}|{arch}|{self.img_size}|{self.grid}"
                              .encode()).hexdigest()[:24]

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = eval_transform(frames, self.img_size)
        if self.video:  # one frame = a still clip of one tubelet (V-JEPA 2 embeds images this way)
            x = x[:, None].expand(-1, self.backbone.tubelet, -1, -1, -1)
        return grid_tokens(self.backbone.tokens(x).float(), self.grid)  # ViT patches or CNN feature-map cells


def grid_tokens(tok: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, side*side, D) tokens of a square map -> (B, grid*grid, D): average-pooled onto a ``grid x grid`` map,
    then layer-normed without affine (what the world models predict)."""
    side = math.isqrt(tok.shape[1])
    if side * side != tok.shape[1]:
        raise ConfigError(f"encoder gives {tok.shape[1]} tokens per frame, not a square grid")
    cells = F.adaptive_avg_pool2d(tok.transpose(1, 2).reshape(len(tok), -1, side, side), grid)
    cells = cells.flatten(2).transpose(1, 2)  # (B, grid*grid, D)
    return F.layer_norm(cells, cells.shape[-1:])


class PixelFrameEncoder(FrameEncoder):
    def __init__(self, size: int = 8, grid: int = 2):
        super().__init__()
        if size % grid:
            raise ConfigError(f"pixel size {size} is not divisible into a {grid}x{grid} grid")
        self.size, self.grid, self.label = size, grid, f"pixels{size}"
        self.tokens_per_frame, self.embed_dim = grid * grid, 3 * (size // grid) ** 2

    @property
    def key(self) -> str:
        return f"pixels-{self.size}-{self.grid}"

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(frames.float() / 127.5 - 1.0, self.size)  # (B, 3, s, s), area average
        c, g = self.size // self.grid, self.grid
        x = x.reshape(len(x), 3, g, c, g, c).permute(0, 2, 4, 1, 3, 5)  # (B, gy, gx, 3, c, c)
        return x.reshape(len(x), g * g, 3 * c * c)


def random_backbone(spec: dict, seed: int) -> nn.Module:
    """A random-init backbone from ``{"name": ..., "img_size": ..., **options}``, its weights drawn by ``seed``."""
    from bench.backbones import create_backbone
    torch.manual_seed(seed)
    kw = dict(spec)
    name, img_size = kw.pop("name"), kw.pop("img_size")
    return create_backbone(name, img_size, **kw)


def load_frame_encoder(spec: str, grid: int = 2, seed: int = 0, pixel_size: int = 8) -> FrameEncoder:
    """``random`` (a seeded random-init vit_tiny/4, the random_vit recipe's backbone), ``pixels``
    (the pixel baseline) or a run folder written by ``bench train`` (its frozen encoder)."""
    if spec == "pixels":
        return PixelFrameEncoder(pixel_size, grid)
    if spec == "random":
        return BackboneFrameEncoder(random_backbone(RANDOM_VIT, seed), RANDOM_VIT["img_size"], grid, label="random-vit")
    path = Path(spec)
    if not path.is_dir():
        raise ConfigError(f"--encoder {spec!r} is neither 'random', 'pixels' nor a run folder (with run.json + encoder.pt)")
    from bench.backbones import Backbone
    from bench.runner import load_encoder
    backbone, info = load_encoder(path)
    if not isinstance(backbone, Backbone):
        raise ConfigError(f"{path}: its encoder is a {type(backbone).__name__}, not an image (or video) backbone "
                          f"with patch tokens; world models need one (resnet*, vit_*, video_vit_*)")
    return BackboneFrameEncoder(backbone, int(info["config"].get("img_size", 32)), grid,
                                label=f"{info.get('method', 'run')}:{path.name}")
