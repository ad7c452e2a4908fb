"""Image bytes -> uint8 (3, H, W) RGB, and the resize + centre crop every cached row gets: the one decoder of the
image loaders (folders, ImageNet, ``hf:``, ``tv:``) and of the streaming path, so both give the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from bench.errors import DataError


def _to_uint8_rgb(im, path: Path) -> np.ndarray:
    """A PIL image -> uint8 (H, W, 3). 16-bit and 32-bit integer greyscale (PNG / TIFF modes ``I;16*``, ``I``) are
    scaled by their bit depth (65535 -> 255), float images (mode ``F``) with values in [0, 1] by 255 - PIL's own
    ``convert("RGB")`` clips them instead (a 16-bit PNG became 99 % white); other float ranges are refused."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) <= 65535 else 4294967295.0
        if arr.min(initial=0) < 0:
            raise DataError(f"cannot decode image {path}: signed {mode} pixels (min {arr.min():g}); convert it "
                            f"to 8-bit RGB first")
        grey = np.round(arr * (255.0 / top)).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all() or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
            raise DataError(f"cannot decode image {path}: float pixels outside [0, 1] (min {np.nanmin(arr):g}, "
                            f"max {np.nanmax(arr):g}) have no defined 8-bit scale; convert it to 8-bit RGB first")
        grey = np.round(arr * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def decode_image(path: Path, data: bytes) -> torch.Tensor:
    """Encoded bytes -> uint8 (3, H, W) RGB (high bit depths scaled, see :func:`_to_uint8_rgb`); a DataError naming
    the file if it cannot be decoded."""
    import io

    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = _to_uint8_rgb(im, path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure means a corrupt or unsupported file
        why = "not a readable image file" if type(e).__name__ == "UnidentifiedImageError" else f"{type(e).__name__}: {e}"
        raise DataError(f"cannot decode image {path}: {why}; fix or remove the file".splitlines()[0]) from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def resize_center(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, size, size): bicubic resize of the short side, centre crop."""
    h, w = img.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(img[None].float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = x[0, :, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)
    return img
