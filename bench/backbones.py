"""Backbones: timm models created offline (``pretrained=False``), one entry point.

``create_backbone(name, img_size=32, **kw)`` returns a :class:`Backbone` whose ``forward`` gives
pooled (B, D) features and, for ViTs, ``tokens(x, keep=None)`` gives (B, N, D) patch tokens.
"""

from __future__ import annotations

import inspect
from typing import Callable

import timm
import torch
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from bench.errors import ConfigError

_BACKBONES: dict[str, Callable[..., "Backbone"]] = {}
_VIDEO_BACKBONES: set[str] = set()
#: name -> (family, the keyword options its factory takes, or None: any)
_FAMILIES: dict[str, tuple[str, frozenset[str] | None]] = {}


def register_backbone(name: str, video: bool = False, family: str | None = None,
                      options: frozenset[str] | None = None):
    """Register a backbone factory; ``video=True`` for one that takes clips (B, T, 3, H, W). ``family`` (default:
    the name) groups backbones that share options (``resnet``, ``vit``, ``video_vit``); ``options`` names the
    ``backbone_kwargs`` the factory takes (None: not known)."""
    def deco(fn):
        _BACKBONES[name] = fn
        (_VIDEO_BACKBONES.add if video else _VIDEO_BACKBONES.discard)(name)
        _FAMILIES[name] = (family or name, options)
        return fn
    return deco


def is_video_backbone(name: str) -> bool:
    """True for a registered backbone that takes clips (the trainer, perf and the modality check ask this)."""
    return name in _VIDEO_BACKBONES


def available_backbones() -> list[str]:
    return sorted(_BACKBONES)


def backbone_family(name: str) -> str | None:
    """``resnet`` | ``vit`` | ``video_vit`` (the registered family), None for an unknown name."""
    return _FAMILIES[name][0] if name in _FAMILIES else None


def backbone_options(name: str) -> frozenset[str] | None:
    """The ``backbone_kwargs`` keys backbone ``name`` takes (its factory's own plus the timm model's), None when
    unknown (an unregistered name, or a factory registered without ``options``)."""
    return _FAMILIES[name][1] if name in _FAMILIES else None


def _options(model_cls: type, own: tuple[str, ...], fixed: tuple[str, ...]) -> frozenset[str]:
    """A factory's options: its own keywords plus the timm model class's, less those the factory sets itself."""
    params = inspect.signature(model_cls.__init__).parameters
    return frozenset(own) | frozenset(p for p in params if p not in ("self", *fixed))


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

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None, prefix: bool = False,
               mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None) -> torch.Tensor:
        """Patch tokens (B, N, D) after the final norm; ``keep`` (B, K) indices keeps K tokens
        (the others never enter the transformer: I-JEPA context encoding); ``mask`` (B, N) bool
        replaces those patch embeddings by ``mask_token`` (D,) before the position embedding is
        added (iBOT / BEiT masked-image modelling); ``prefix=True`` also returns the prefix tokens
        ([CLS], registers) first: every output token, which is what the attentive probe reads.
        For a CNN the tokens are the cells of the last feature map (B, h*w, C); ``keep`` and
        ``mask`` are not supported."""
        m = self.model
        if not self.is_vit:
            if keep is not None or mask is not None:
                raise TypeError(f"backbone {self.name!r} is not a ViT: it cannot drop or mask tokens")
            return m.forward_features(x).flatten(2).transpose(1, 2)
        x = m.patch_embed(x)
        if mask is not None:
            # (B, h, w, D) with timm's dynamic image size, else (B, N, D)
            x = torch.where(mask.reshape(*x.shape[:-1], 1), mask_token.to(x.dtype), x)
        x = m._pos_embed(x)  # adds pos-embed, prepends prefix tokens if any
        return self._encode(x, m.num_prefix_tokens, keep, prefix)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens(x, prefix=True)`` -> the pooled feature ``forward(x)`` returns ([CLS] or mean, then
        timm's fc_norm): one encoder pass gives both the global feature and the patch tokens."""
        return self.model.forward_head(tokens, pre_logits=True)

    def pooled_and_patches(self, x: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
        """One token pass -> (the pooled feature ``forward(x)`` gives, the patch tokens without prefix tokens);
        ``kw`` go to ``tokens`` (``mask`` / ``mask_token``)."""
        tokens = self.tokens(x, prefix=True, **kw)
        return self.pool(tokens), tokens[:, self.model.num_prefix_tokens:]

    def _encode(self, x: torch.Tensor, n_prefix: int, keep: torch.Tensor | None, prefix: bool = False) -> torch.Tensor:
        """Embedded tokens (B, n_prefix + N, D) -> the transformer's patch tokens, keeping only ``keep``."""
        m = self.model
        if keep is not None:
            patches = x[:, n_prefix:]
            idx = keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
            x = torch.cat([x[:, :n_prefix], torch.gather(patches, 1, idx)], dim=1)
        x = m.norm_pre(x)
        x = m.blocks(x)
        x = m.norm(x)
        return x if prefix else x[:, n_prefix:]


def sincos_pos_embed(dim: int, grid: tuple[int, ...]) -> torch.Tensor:
    """(prod(grid), dim) fixed sine-cosine position embedding over a 2-D (h, w) or 3-D (t, h, w) grid:
    the channels are split evenly over the axes (MAE / I-JEPA / V-JEPA style)."""
    per_axis = dim // len(grid) // 2 * 2
    coords = torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij")
    parts = []
    for pos in coords:
        omega = 1.0 / 10000 ** (torch.arange(per_axis // 2, dtype=torch.float64) / max(1, per_axis // 2))
        out = pos.flatten().double()[:, None] * omega[None]
        parts += [out.sin(), out.cos()]
    emb = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(emb, (0, dim - emb.shape[1])).float()


class VideoBackbone(Backbone):
    """A ViT on clips: tubelet patch embedding (tubelet x patch x patch Conv3d) and a fixed 3-D
    sine-cosine position embedding, then the same timm blocks / norms as the image ViT (``tokens``
    with ``keep`` works as for images). Input (B, T, 3, H, W); ``forward`` = mean of the tokens."""

    def __init__(self, model: nn.Module, name: str, img_size: int, tubelet: int = 2):
        super().__init__(model, name, img_size)
        p = model.patch_embed.patch_size[0]
        model.patch_embed = nn.Identity()  # replaced by the tubelet embedding (no unused parameters under DDP)
        self.tubelet, self.patch = tubelet, p
        self.tubelet_embed = nn.Conv3d(3, self.embed_dim, kernel_size=(tubelet, p, p), stride=(tubelet, p, p))

    def grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        _, t, _, h, w = x.shape
        if t % self.tubelet or h % self.patch or w % self.patch:
            raise ValueError(f"clip {tuple(x.shape[1:])} is not divisible into {self.tubelet}x{self.patch}x{self.patch} tubelets")
        return t // self.tubelet, h // self.patch, w // self.patch

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None, prefix: bool = False) -> torch.Tensor:
        grid = self.grid(x)
        z = self.tubelet_embed(x.transpose(1, 2)).flatten(2).transpose(1, 2)  # (B, t*h*w, D)
        z = z + sincos_pos_embed(self.embed_dim, grid).to(z)
        return self._encode(z, 0, keep, prefix)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The clip feature: the mean of the tokens (no prefix tokens, no fc_norm)."""
        return tokens.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.tokens(x))


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


def _video_vit(arch: str):
    def make(img_size: int = 32, patch_size: int = 4, tubelet: int = 2, **kw) -> Backbone:
        model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=img_size, patch_size=patch_size,
                                  class_token=False, global_pool="avg", pos_embed="none", **kw)
        return VideoBackbone(model, f"video_{arch}", img_size, tubelet)
    return make


_RESNET_OPTIONS = _options(ResNet, own=("stem",), fixed=("block", "layers", "num_classes"))
_VIT_OPTIONS = _options(VisionTransformer, own=(), fixed=("img_size", "num_classes", "dynamic_img_size"))
_VIDEO_VIT_OPTIONS = _options(VisionTransformer, own=("tubelet",),
                              fixed=("img_size", "num_classes", "class_token", "global_pool", "pos_embed"))
for _arch in ("resnet18", "resnet34", "resnet50"):
    register_backbone(_arch, family="resnet", options=_RESNET_OPTIONS)(_resnet(_arch))
for _arch in ("vit_tiny_patch16_224", "vit_small_patch16_224"):
    register_backbone(_arch.split("_patch")[0], family="vit", options=_VIT_OPTIONS)(_vit(_arch))
    register_backbone("video_" + _arch.split("_patch")[0], video=True, family="video_vit",
                      options=_VIDEO_VIT_OPTIONS)(_video_vit(_arch))


def check_backbone(name: str, kwargs: dict | None = None) -> None:
    """A ConfigError unless ``name`` is registered and takes every key of ``kwargs`` (its ``backbone_kwargs``);
    nothing is built, so this runs before any data is loaded."""
    from difflib import get_close_matches
    if name not in _BACKBONES:
        hint = get_close_matches(name, _BACKBONES, n=1)
        raise ConfigError(f"unknown backbone {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; known: {', '.join(available_backbones())}")
    options = backbone_options(name)
    for key in kwargs or {}:
        if options is not None and key not in options:
            hint = get_close_matches(key, options, n=1)
            raise ConfigError(f"backbone {name!r} ({backbone_family(name)}) takes no option {key!r} in backbone_kwargs"
                              + (f" (did you mean {hint[0]!r}?)" if hint else ""))


def create_backbone(name: str, img_size: int = 32, **kw) -> Backbone:
    """Create a backbone by short name (``resnet18``, ``resnet50``, ``vit_tiny``, ``vit_small``, ...).

    ResNets take ``stem=`` 'imagenet' | 'small' | 'cifar'; ViTs take ``patch_size=`` (default 4).
    """
    check_backbone(name, kw)
    try:
        return _BACKBONES[name](img_size=img_size, **kw)
    except TypeError as e:
        raise ConfigError(f"bad options for backbone {name!r}: {e}") from None
