"""Masks for I-JEPA / V-JEPA (multi-block) and MAE (uniform random patches), sampled for a whole batch at once
(no per-image loop).

As in the official collator, block *sizes* are drawn once per batch (so every image keeps the
same number of tokens and tensors stay rectangular) and block *positions* per image. ``generator=None``
draws from torch's global RNG (what the methods do: the trainer seeds it per step from the run seed).
"""

from __future__ import annotations

import math

import torch


def block_size(grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float],
               generator: torch.Generator | None) -> tuple[int, int]:
    """(h, w) of a block covering a fraction ~U(scale) of the grid with aspect h/w ~ U(aspect) (log-uniform)."""
    gh, gw = grid
    s = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item()
    lo, hi = math.log(aspect[0]), math.log(aspect[1])
    a = math.exp(lo + (hi - lo) * torch.rand((), generator=generator).item())
    area = s * gh * gw
    h = max(1, min(gh, round(math.sqrt(area * a))))
    w = max(1, min(gw, round(math.sqrt(area / a))))
    return h, w


def block_masks(batch: int, grid: tuple[int, int], num_blocks: int, size: tuple[int, int],
                generator: torch.Generator | None) -> torch.Tensor:
    """(batch, num_blocks, gh*gw) bool: each block an h x w rectangle at a random position per image."""
    gh, gw = grid
    h, w = size
    top = torch.randint(0, gh - h + 1, (batch, num_blocks, 1, 1), generator=generator)
    left = torch.randint(0, gw - w + 1, (batch, num_blocks, 1, 1), generator=generator)
    return rectangles(grid, top, left, h, w)


def rectangles(grid: tuple[int, int], top, left, h, w) -> torch.Tensor:
    """(..., gh*gw) bool: the h x w rectangle at (top, left) on the grid; each argument an int or a tensor
    shaped (..., 1, 1), broadcast together (one rectangle per leading index)."""
    gh, gw = grid
    device = next((t.device for t in (top, left, h, w) if isinstance(t, torch.Tensor)), None)
    rows = torch.arange(gh, device=device).view(gh, 1)
    cols = torch.arange(gw, device=device).view(1, gw)
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return inside.flatten(-2)


def mask_to_index(mask: torch.Tensor) -> torch.Tensor:
    """(..., N) bool with the same count per row -> (..., K) sorted indices of the True entries."""
    k = int(mask.sum(-1).flatten()[0])
    return torch.sort(mask.float(), dim=-1, descending=True, stable=True).indices[..., :k].sort(-1).values


def sample_ijepa_masks(batch: int, grid: tuple[int, int], generator: torch.Generator | None, *,
                       num_targets: int = 4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                       context_scale=(0.85, 1.0), min_context: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """I-JEPA masks. Returns ``context_idx`` (B, Kc) and ``target_idx`` (B, num_targets, Kt):
    target blocks at scale ~ target_scale, one context block at scale ~ context_scale (aspect 1)
    with every target patch removed; each image keeps the batch-wide minimum context count
    (a random subset of its context patches), so context and targets are always disjoint."""
    t_size = block_size(grid, target_scale, target_aspect, generator)
    c_size = block_size(grid, context_scale, (1.0, 1.0), generator)
    targets = block_masks(batch, grid, num_targets, t_size, generator)          # (B, J, N)
    context = block_masks(batch, grid, 1, c_size, generator)[:, 0]              # (B, N)
    context &= ~targets.any(1)
    keep = int(context.sum(1).min())
    if keep < min_context:  # rare: targets cover the context block; fall back to all non-target patches
        context = ~targets.any(1)
        keep = int(context.sum(1).min())
    # a random subset of `keep` context patches per image
    return _random_subset(context, keep, generator), mask_to_index(targets)


def _random_subset(mask: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B, N) bool -> (B, k) sorted indices of k random True entries per row (every row has >= k)."""
    scores = torch.where(mask, torch.rand(mask.shape, generator=generator), torch.full(mask.shape, -1.0))
    return scores.topk(k, dim=1).indices.sort(1).values


def sample_mae_masks(batch: int, n: int, mask_ratio: float, generator: torch.Generator | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's random masking: per image a uniform random subset of K = int(n * (1 - mask_ratio)) visible patches
    (the official count). Returns ``visible_idx`` (B, K) sorted indices and ``mask`` (B, n) bool, True where a
    patch is hidden (the loss reads those)."""
    keep = int(n * (1 - mask_ratio))
    if not 0 < keep < n:
        raise ValueError(f"mask_ratio {mask_ratio} leaves {keep} of {n} patches visible: need at least one "
                         "visible and one masked")
    visible = _random_subset(torch.ones(batch, n, dtype=torch.bool), keep, generator)
    mask = torch.ones(batch, n, dtype=torch.bool).scatter_(1, visible, False)
    return visible, mask


def sample_vjepa_masks(batch: int, grid: tuple[int, int, int], generator: torch.Generator | None, *,
                       num_blocks: int = 8, scale=(0.15, 0.15), aspect=(0.75, 1.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """V-JEPA 3-D multi-block masks over a (t, h, w) token grid: ``num_blocks`` spatial blocks whose
    union is masked in *every* frame (tubes through time, so the target cannot be copied from a
    neighbouring frame); the context is the rest. Short-range: 8 blocks at scale 0.15; long-range:
    2 blocks at scale 0.7. Returns ``context_idx`` (B, Kc) and ``target_idx`` (B, Kt) into the
    flattened t*h*w tokens; counts are the batch-wide minimum (random subsets), disjoint by construction."""
    t, h, w = grid
    size = block_size((h, w), scale, aspect, generator)
    spatial = block_masks(batch, (h, w), num_blocks, size, generator).any(1)            # (B, h*w)
    if bool(spatial.all(1).any()):  # a union that covers every patch leaves no context: keep one patch out
        spatial[torch.arange(batch), torch.randint(0, h * w, (batch,), generator=generator)] = False
    target = spatial.repeat(1, t)                                                        # (B, t*h*w)
    n_target, n_context = int(target.sum(1).min()), int((~target).sum(1).min())
    return _random_subset(~target, n_context, generator), _random_subset(target, n_target, generator)
