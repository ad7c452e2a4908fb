"""Batched multi-view augmentation applied on the training device (kornia), never per-image PIL.

A method declares the views it needs as a list of :class:`ViewSpec`; :class:`ViewAugmenter` turns a
uint8 batch (B, 3, H, W) into one normalised float tensor per view, with fresh random parameters
per image and per view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import kornia.augmentation as K
import torch
from torch import nn
from torch.nn import functional as F

from bench.threads import one_cpu_thread

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) floats in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def eval_transform(images: torch.Tensor, img_size: int, crop_pct: float = 1.0) -> torch.Tensor:
    """Deterministic evaluation preprocessing: resize the short side to img_size / crop_pct,
    centre-crop img_size, normalise. uint8 or [0, 1] float in, normalised float out."""
    if images.ndim == 5:  # clips (B, T, 3, H, W): frame by frame
        b, t = images.shape[:2]
        return eval_transform(images.flatten(0, 1), img_size, crop_pct).unflatten(0, (b, t))
    x = to_float(images)
    resize = int(round(img_size / crop_pct))
    if x.shape[-1] != resize or x.shape[-2] != resize:
        h, w = x.shape[-2:]
        scale = resize / min(h, w)
        x = F.interpolate(x, size=(max(resize, round(h * scale)), max(resize, round(w * scale))),
                          mode="bilinear", antialias=True, align_corners=False)
    h, w = x.shape[-2:]
    top, left = (h - img_size) // 2, (w - img_size) // 2
    return normalize(x[..., top:top + img_size, left:left + img_size].clamp_(0, 1))


@dataclass(frozen=True)
class ViewSpec:
    """One augmented view. Defaults are SimCLR's ImageNet recipe (blur off: it hurts at <= 64 px)."""

    size: int | None = None            # output side in pixels; None = the run's --img-size x size_frac
    size_frac: float = 1.0             # e.g. 0.5 for DINO's local crops
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0

    @classmethod
    def simclr(cls, **kw) -> "ViewSpec":
        return cls(**kw)

    @classmethod
    def byol(cls, blur_p: float, solarize_p: float, **kw) -> "ViewSpec":
        """BYOL / Barlow Twins asymmetric view: jitter (0.4, 0.4, 0.2, 0.1), chosen blur/solarize."""
        return cls(jitter=(0.4, 0.4, 0.2, 0.1), blur_p=blur_p, solarize_p=solarize_p, **kw)

    def with_overrides(self, overrides: dict) -> "ViewSpec":
        """A copy with the named fields set (lists become tuples, as YAML gives them); a name that is no field of
        the view, or one the method owns (size, size_frac, scale), is a TypeError naming it."""
        allowed = {f.name for f in fields(self)} - {"size", "size_frac", "scale"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise TypeError(f"view_overrides: unknown view field(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(allowed))}")
        return replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})

    def with_size(self, size: int) -> "ViewSpec":
        return self if self.size is not None else replace(self, size=max(1, round(size * self.size_frac)))

    def to_dict(self) -> dict:
        return asdict(self)


def _view_pipeline(spec: ViewSpec, video: bool = False, crop: bool = True) -> nn.Module:
    """The kornia ops of one view; ``video``: clips (B, T, 3, H, W) with one set of random parameters
    per clip, shared by all its frames (a crop that moves between frames would fake motion); ``crop=False``:
    without the RandomResizedCrop (the view arrives cropped)."""
    ops = _view_ops(spec)[0 if crop else 1:]
    return K.VideoSequential(*ops, data_format="BTCHW", same_on_frame=True) if video else nn.Sequential(*ops)


def _view_ops(spec: ViewSpec) -> list[nn.Module]:
    size = int(spec.size)
    ops: list[nn.Module] = [K.RandomResizedCrop((size, size), scale=spec.scale, ratio=spec.ratio,
                                                cropping_mode="resample")]
    if spec.flip_p > 0:
        ops.append(K.RandomHorizontalFlip(p=spec.flip_p))
    if spec.jitter_p > 0:
        b, c, s, h = spec.jitter
        ops.append(K.ColorJitter(b, c, s, h, p=spec.jitter_p))
    if spec.gray_p > 0:
        ops.append(K.RandomGrayscale(p=spec.gray_p))
    if spec.blur_p > 0:
        kernel = max(3, (size // 10) | 1)  # ~10% of the side, odd (SimCLR)
        ops.append(K.RandomGaussianBlur((kernel, kernel), spec.blur_sigma, p=spec.blur_p))
    if spec.solarize_p > 0:
        ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=spec.solarize_p))  # threshold 0.5
    return ops


class ViewAugmenter(nn.Module):
    """uint8 images (B, 3, H, W) or clips (B, T, 3, H, W) on any device -> list of normalised views,
    one per ViewSpec (clips keep their frames: one crop / flip / jitter per clip)."""

    def __init__(self, specs: list[ViewSpec], img_size: int):
        super().__init__()
        self.specs = [s.with_size(img_size) for s in specs]
        # identical specs share one pipeline module (it holds no per-call state)
        self._pipes = nn.ModuleDict()
        self._cropped: dict[str, nn.Module] = {}
        self._keys = []
        for s in self.specs:
            key = str(abs(hash(s)))
            if key not in self._pipes:
                self._pipes[key] = _view_pipeline(s)
                self._pipes[key + "_video"] = _view_pipeline(s, video=True)
                # not registered as submodules: the checkpoints of runs (their state_dict) stay as they were
                self._cropped[key] = _view_pipeline(s, crop=False)
            self._keys.append(key)

    @torch.no_grad()
    def forward(self, images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``images`` may also be one uint8 (B, 3, s, s) batch per view, each already cropped to its view's size
        (a streamed split's, :class:`bench.data.streaming.StreamedViews`): the view's other ops follow."""
        if isinstance(images, (list, tuple)):
            if len(images) != len(self._keys):
                raise ValueError(f"{len(images)} cropped batches for {len(self._keys)} views")
            with one_cpu_thread(images[0].device):
                return [normalize(self._cropped[k].to(x.device)(to_float(x)).clamp_(0, 1))
                        for k, x in zip(self._keys, images)]
        with one_cpu_thread(images.device):
            x = to_float(images)
            suffix = "_video" if x.ndim == 5 else ""
            return [normalize(self._pipes[k + suffix](x).clamp_(0, 1)) for k in self._keys]

