"""Collapse monitors on encoder features, computed every epoch.

- ``feature_std``: mean over dimensions of the batch std of L2-normalised features, times sqrt(D)
  (~1 for features spread over the sphere, -> 0 when every image maps to the same point).
- ``effective_rank``: RankMe (Garrido et al., 2023), exp of the entropy of the normalised
  singular values of the feature matrix (1 = all features on a line, D = isotropic).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: below these a representation is flagged as collapsed
COLLAPSE_STD = 0.05
COLLAPSE_RANK = 1.5


def feature_std(feats: torch.Tensor) -> float:
    u = F.normalize(feats.float(), dim=1)
    return float(u.std(dim=0).mean() * math.sqrt(u.shape[1]))


def effective_rank(feats: torch.Tensor, eps: float = 1e-7) -> float:
    s = torch.linalg.svdvals(feats.float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_metrics(feats: torch.Tensor) -> dict[str, float]:
    return {"feature_std": feature_std(feats), "effective_rank": effective_rank(feats)}


def is_collapsed(metrics: dict[str, float]) -> bool:
    return metrics["feature_std"] < COLLAPSE_STD or metrics["effective_rank"] < COLLAPSE_RANK
