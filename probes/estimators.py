"""Label-free estimators of representation quality, computed on frozen features without any label.

- ``rankme`` (Garrido et al., ICML 2023): the smooth rank of the (N, D) feature matrix Z,
  ``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum_j s_j + eps`` over its singular values s_k
  (:func:`bench.monitors.effective_rank`, the monitor training logs every epoch). 1 = collapsed onto a line,
  min(N, D) = isotropic.
- ``alpha_req`` (Agrawal et al., NeurIPS 2022): the decay exponent alpha of the eigenspectrum of the feature
  covariance, ``lambda_k ~ c * k^-alpha``, fit by least squares of ``log lambda_k`` on ``log k`` over the ranks
  ``ALPHA_FIT_RANKS`` (the first few eigenvalues and the noisy tail left out, as the reference code does).
  Near 1 is what the paper finds in well-performing encoders; much larger: few directions carry the variance.
- ``lidar`` (Thilak et al., ICLR 2024): the smooth rank of the linear-discriminant matrix of a surrogate
  classification task, each of n images a class and its q augmented views its samples:
  ``mu_i`` the mean of image i's views, ``mu`` the mean of the ``mu_i``,
  ``S_b = 1/(n-1) sum_i (mu_i - mu)(mu_i - mu)^T``,
  ``S_w = 1/(n(q-1)) sum_i sum_j (z_ij - mu_i)(z_ij - mu_i)^T + delta I``,
  ``S = S_w^-1/2 S_b S_w^-1/2``; LiDAR = ``exp(-sum_k p_k log p_k)``, ``p_k = lambda_k / sum_j lambda_j + eps``
  over S's eigenvalues. At most n - 1.

RankMe and alpha-ReQ read the benchmark's already extracted features (at most ``MAX_ROWS`` of them, a fixed
draw); LiDAR extracts features of ``LIDAR_VIEWS`` augmented views (random resized crop, scale 0.25-1, and a
horizontal flip; the same crop on every frame of a clip) of ``LIDAR_IMAGES`` fixed train images, seeded by the
benchmark's ``split_seed``. :func:`estimate` returns the values and a ``setup`` dict saying all of this, which
the record keeps."""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.monitors import effective_rank
from probes.features import extract_features

#: rows of the feature matrix RankMe and alpha-ReQ read (RankMe's paper: 25,600 images)
MAX_ROWS = 25_600
#: 1-based eigenvalue ranks the alpha-ReQ power law is fit over (clipped to the eigenvalues there are)
ALPHA_FIT_RANKS = (6, 100)
LIDAR_IMAGES = 200
LIDAR_VIEWS = 5
LIDAR_DELTA = 1e-4
LIDAR_SCALE = (0.25, 1.0)
EPS = 1e-7


def rankme(feats: torch.Tensor) -> float:
    """Smooth rank of the feature matrix (see the module docstring); the uncentred features, as in the paper."""
    return effective_rank(feats, eps=EPS)


def covariance_spectrum(feats: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the (D, D) covariance of the centred features, descending (float64)."""
    z = feats.double()
    z = z - z.mean(0, keepdim=True)
    return torch.linalg.eigvalsh(z.T @ z / max(1, len(z) - 1)).flip(0)


def power_law_exponent(eigvals: torch.Tensor, ranks: tuple[int, int] = ALPHA_FIT_RANKS) -> float:
    """alpha of ``lambda_k = c * k^-alpha``: minus the least-squares slope of ``log lambda_k`` on ``log k`` over
    the 1-based ranks ``ranks[0]..ranks[1]`` (clipped to the positive eigenvalues; all of them when that leaves
    fewer than 3). NaN with fewer than 2 positive eigenvalues."""
    lam = eigvals.double()
    lam = lam[lam > lam[0] * 1e-12] if len(lam) and lam[0] > 0 else lam[:0]
    if len(lam) < 2:
        return math.nan
    lo, hi = ranks[0], min(ranks[1], len(lam))
    if hi - lo + 1 < 3:
        lo, hi = 1, len(lam)
    k = torch.arange(lo, hi + 1, dtype=torch.float64)
    x, y = k.log(), lam[lo - 1:hi].log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    return float(-slope)


def alpha_req(feats: torch.Tensor) -> float:
    """The eigenspectrum decay exponent of the features' covariance (see the module docstring)."""
    return power_law_exponent(covariance_spectrum(feats))


def lidar(view_feats: torch.Tensor, delta: float = LIDAR_DELTA) -> float:
    """LiDAR of (n, q, D) features: n images, q augmented views each (see the module docstring)."""
    z = view_feats.double()
    n, q, d = z.shape
    if n < 2 or q < 2:
        raise ValueError(f"LiDAR needs at least 2 images with 2 views each, got {n} x {q}")
    mu_i = z.mean(1)                                      # (n, D)
    between = mu_i - mu_i.mean(0)
    s_b = between.T @ between / (n - 1)
    within = (z - mu_i[:, None]).reshape(-1, d)
    s_w = within.T @ within / (n * (q - 1)) + delta * torch.eye(d, dtype=z.dtype)
    w, v = torch.linalg.eigh(s_w)
    inv_sqrt = v @ torch.diag(w.clamp_min(1e-30).rsqrt()) @ v.T
    lam = torch.linalg.eigvalsh(inv_sqrt @ s_b @ inv_sqrt).clamp_min(0)
    p = lam / lam.sum() + EPS
    return float(torch.exp(-(p * p.log()).sum()))


def fixed_rows(n: int, count: int, seed: int) -> torch.Tensor:
    """``min(n, count)`` row indices drawn without replacement by ``seed`` (sorted): the same rows every run."""
    if count >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def augmented_views(images: torch.Tensor, views: int, seed: int) -> torch.Tensor:
    """(n, 3, S, S) uint8 images (or (n, T, 3, S, S) clips) -> (n * views, ...) uint8 views, image-major: a random
    resized crop (``LIDAR_SCALE``, back to S px) and a horizontal flip (p 0.5), by kornia, seeded."""
    import kornia.augmentation as K
    size = tuple(images.shape[-2:])
    ops = [K.RandomResizedCrop(size, scale=LIDAR_SCALE, cropping_mode="resample"), K.RandomHorizontalFlip(p=0.5)]
    pipe = K.VideoSequential(*ops, data_format="BTCHW", same_on_frame=True) if images.ndim == 5 else nn.Sequential(*ops)
    x = images.float().div(255).repeat_interleave(views, dim=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = pipe(x)
    return out.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def estimate(encoder: nn.Module, images: torch.Tensor, feats: torch.Tensor, *, img_size: int, crop_pct: float = 1.0,
             seed: int = 0, split: str = "train", device=None, lidar_images: int = LIDAR_IMAGES,
             lidar_views: int = LIDAR_VIEWS, cache_dir=None, data_key: str | None = None
             ) -> tuple[dict[str, float], dict]:
    """RankMe and alpha-ReQ of ``feats`` (the frozen features of ``images``, the ``split`` split), LiDAR of the
    encoder's features of augmented views of ``lidar_images`` of those images (cached like every feature when
    ``cache_dir`` and ``data_key``, the images' own key, are given). No labels are read. Returns (values, setup);
    a value that cannot be computed (NaN) is left out of values."""
    rows = fixed_rows(len(feats), MAX_ROWS, seed)
    z = feats[rows].float()
    values = {"rankme": rankme(z), "alpha_req": alpha_req(z)}
    setup: dict = {"split": split, "rows": len(rows), "alpha_fit_ranks": list(ALPHA_FIT_RANKS), "seed": seed}
    pick = fixed_rows(len(images), lidar_images, seed)
    if len(pick) >= 2 and lidar_views >= 2:
        views = augmented_views(images[pick], lidar_views, seed)
        key = f"{data_key}|lidar:{len(pick)}x{lidar_views}:{seed}" if data_key else None
        vf = extract_features(encoder, views, img_size=img_size, crop_pct=crop_pct, device=device,
                              cache_dir=cache_dir, data_key=key)
        values["lidar"] = lidar(vf.view(len(pick), lidar_views, -1))
        setup.update(lidar_images=len(pick), lidar_views=lidar_views, lidar_delta=LIDAR_DELTA,
                     lidar_augment=f"random resized crop scale {LIDAR_SCALE[0]}-{LIDAR_SCALE[1]} + horizontal flip")
    return {k: round(v, 4) for k, v in values.items() if math.isfinite(v)}, setup
