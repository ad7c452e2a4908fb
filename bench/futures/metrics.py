"""The futures-v1 metrics: is a pixel prediction the blur of two futures, and does an embedding prediction land
on a future that can happen? Frames are float tensors (..., C, H, W); clips (N, T, C, H, W)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def gradient_energy(frames: torch.Tensor) -> torch.Tensor:
    """Mean squared finite difference per item of the leading dim: for x (N, ..., H, W),
    ``E = mean((x[..., :, 1:] - x[..., :, :-1])**2) + mean((x[..., 1:, :] - x[..., :-1, :])**2)`` -> (N,).
    A constant frame has E = 0; blurring lowers E (edges spread over more, smaller steps)."""
    dx = (frames[..., :, 1:] - frames[..., :, :-1]).pow(2).flatten(1).mean(1)
    dy = (frames[..., 1:, :] - frames[..., :-1, :]).pow(2).flatten(1).mean(1)
    return dx + dy


def sharpness(pred: torch.Tensor, real: torch.Tensor) -> float:
    """Gradient energy of the predicted frames relative to the real ones: ``sum E(pred) / sum E(real)``
    (1 = as sharp as real frames, 0 = flat)."""
    return float(gradient_energy(pred).sum() / gradient_energy(real).sum().clamp_min(1e-12))


def clip_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per clip: (N, ...) x (N, ...) -> (N,)."""
    return (a - b).pow(2).flatten(1).mean(1)


def blur_distances(pred: torch.Tensor, future_a: torch.Tensor, future_b: torch.Tensor) -> dict[str, float]:
    """Means over clips of ``MSE(pred, (a + b) / 2)`` (``to_mean``) and ``min(MSE(pred, a), MSE(pred, b))``
    (``to_nearer``), and of the mean's own distance to either future (``mean_to_future``, = ``MSE(a, b) / 4``:
    the scale on which "close to the mean" is read). A predictor of the average has ``to_mean`` ~ 0 and
    ``to_nearer`` ~ ``mean_to_future``; one that commits to a future has ``to_nearer`` ~ 0."""
    mean = (future_a + future_b) / 2
    return {"to_mean": float(clip_mse(pred, mean).mean()),
            "to_nearer": float(torch.minimum(clip_mse(pred, future_a), clip_mse(pred, future_b)).mean()),
            "mean_to_future": float(clip_mse(mean, future_a).mean())}


def retrieve_cosine(pred: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Index (N,) of each prediction's nearest candidate by cosine similarity: pred (N, D), candidates (N, K, D)."""
    sim = torch.einsum("nd,nkd->nk", F.normalize(pred, dim=-1), F.normalize(candidates, dim=-1))
    return sim.argmax(1)


def retrieve_mse(pred: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Index (N,) of each prediction's nearest candidate by squared distance: pred (N, D), candidates (N, K, D)."""
    return (candidates - pred[:, None]).pow(2).sum(-1).argmin(1)


def retrieval_rates(index: torch.Tensor, kinds: tuple[str, ...], happened: torch.Tensor) -> dict[str, float]:
    """Percent of clips whose retrieved candidate (``index`` (N,) into the K candidates named by ``kinds``, the
    two plausible futures named ``turn_*`` first) is ``plausible`` (either turn), ``happened`` (the turn
    ``happened`` (N,) in {0, 1} that was rendered as the clip's future), or of each other kind; ``chance_*`` the
    rates of a uniform pick."""
    k = len(kinds)
    plausible = index < 2
    out = {"plausible": 100.0 * float(plausible.float().mean()),
           "happened": 100.0 * float((index == happened).float().mean()),
           "chance_plausible": 100.0 * 2 / k, "chance_happened": 100.0 / k}
    for name in dict.fromkeys(kinds[2:]):
        hits = torch.tensor([kinds[int(i)] == name for i in index])
        out[name] = 100.0 * float(hits.float().mean())
    return out
