"""Backbones: timm models created offline (``pretrained=False``), one entry point.

``create_backbone(name, img_size=32, **kw)`` returns a :class:`Backbone` whose ``forward`` gives
pooled (B, D) features and, for ViTs, ``tokens(x, keep=None)`` gives (B, N, D) patch tokens.
"""

from __future__ import annotations

from typing import Callable

import timm
import torch
from torch import nn

from bench.errors import ConfigError

_BACKBONES: dict[str, Callable[..., "Backbone"]] = {}


def register_backbone(name: str):
    def deco(fn):
        _BACKBONES[name] = fn
        return fn
    return deco


def available_backbones() -> list[str]:
    return sorted(_BACKBONES)


class Backbone(nn.Module):
    """A timm model without classifier. ``embed_dim`` = width of the pooled features."""

    def __init__(self, model: nn.Module, name: str, img_size: int):
        super().__init__()
        self.model = model
        self.name = name
        self.img_size = img_size
        self.embed_dim: int = model.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def is_vit(self) -> bool:
        return hasattr(self.model, "patch_embed")

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Patch tokens (B, N, D) after the final norm; ``keep`` (B, K) indices keeps K tokens
        (the others never enter the transformer: I-JEPA context encoding). For a CNN the tokens
        are the cells of the last feature map (B, h*w, C) and ``keep`` is not supported."""
        m = self.model
        if not self.is_vit:
            if keep is not None:
                raise TypeError(f"backbone {self.name!r} is not a ViT: it cannot drop tokens (keep=...)")
            return m.forward_features(x).flatten(2).transpose(1, 2)
        x = m.patch_embed(x)
        x = m._pos_embed(x)  # adds pos-embed, prepends prefix tokens if any
        n_prefix = m.num_prefix_tokens
        if keep is not None:
            patches = x[:, n_prefix:]
            idx = keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
            x = torch.cat([x[:, :n_prefix], torch.gather(patches, 1, idx)], dim=1)
        x = m.norm_pre(x)
        x = m.blocks(x)
        x = m.norm(x)
        return x[:, n_prefix:]


def _small_stem(model: nn.Module, stem: str) -> None:
    """'small': 3x3 stride-1 conv + max-pool (total stride 2, for 32-64 px images);
    'cifar': 3x3 stride-1 conv, no max-pool (total stride 1, the CIFAR ResNet stem)."""
    if stem == "imagenet":
        return
    if stem not in ("small", "cifar"):
        raise ConfigError(f"unknown stem {stem!r}: use 'imagenet', 'small' or 'cifar'")
    out_ch = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, out_ch, kernel_size=3, stride=1, padding=1, bias=False)
    if stem == "cifar":
        model.maxpool = nn.Identity()


def _resnet(arch: str):
    def make(img_size: int = 32, stem: str = "imagenet", **kw) -> Backbone:
        model = timm.create_model(arch, pretrained=False, num_classes=0, **kw)
        _small_stem(model, stem)
        return Backbone(model, arch, img_size)
    return make


def _vit(arch: str):
    def make(img_size: int = 32, patch_size: int = 4, **kw) -> Backbone:
        model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=img_size,
                                  patch_size=patch_size, dynamic_img_size=True, **kw)
        return Backbone(model, arch, img_size)
    return make


for _arch in ("resnet18", "resnet34", "resnet50"):
    register_backbone(_arch)(_resnet(_arch))
for _arch in ("vit_tiny_patch16_224", "vit_small_patch16_224"):
    register_backbone(_arch.split("_patch")[0])(_vit(_arch))


def create_backbone(name: str, img_size: int = 32, **kw) -> Backbone:
    """Create a backbone by short name (``resnet18``, ``resnet50``, ``vit_tiny``, ``vit_small``, ...).

    ResNets take ``stem=`` 'imagenet' | 'small' | 'cifar'; ViTs take ``patch_size=`` (default 4).
    """
    if name not in _BACKBONES:
        from difflib import get_close_matches
        hint = get_close_matches(name, _BACKBONES, n=1)
        raise ConfigError(f"unknown backbone {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; known: {', '.join(available_backbones())}")
    try:
        return _BACKBONES[name](img_size=img_size, **kw)
    except TypeError as e:
        raise ConfigError(f"bad options for backbone {name!r}: {e}") from None
