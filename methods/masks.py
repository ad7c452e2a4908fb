"""Multi-block masks for I-JEPA / V-JEPA, sampled for a whole batch at once (no per-image loop).

As in the official collator, block *sizes* are drawn once per batch (so every image keeps the
same number of tokens and tensors stay rectangular) and block *positions* per image.
"""

from __future__ import annotations

import math

import torch


def block_size(grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float],
               generator: torch.Generator) -> tuple[int, int]:
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
                generator: torch.Generator) -> torch.Tensor:
    """(batch, num_blocks, gh*gw) bool: each block an h x w rectangle at a random position per image."""
    gh, gw = grid
    h, w = size
    top = torch.randint(0, gh - h + 1, (batch, num_blocks, 1, 1), generator=generator)
    left = torch.randint(0, gw - w + 1, (batch, num_blocks, 1, 1), generator=generator)
    rows = torch.arange(gh).view(1, 1, gh, 1)
    cols = torch.arange(gw).view(1, 1, 1, gw)
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return inside.flatten(2)


def mask_to_index(mask: torch.Tensor) -> torch.Tensor:
    """(..., N) bool with the same count per row -> (..., K) sorted indices of the True entries."""
    k = int(mask.sum(-1).flatten()[0])
    return torch.sort(mask.float(), dim=-1, descending=True, stable=True).indices[..., :k].sort(-1).values


def sample_ijepa_masks(batch: int, grid: tuple[int, int], generator: torch.Generator, *, num_targets: int = 4,
                       target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0),
                       min_context: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
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
    # a random subset of `keep` context patches per image (scores: random where allowed, -1 elsewhere)
    scores = torch.where(context, torch.rand(context.shape, generator=generator), torch.full(context.shape, -1.0))
    context_idx = scores.topk(keep, dim=1).indices.sort(1).values
    return context_idx, mask_to_index(targets)
