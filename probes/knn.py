"""Weighted k-NN on frozen features (Wu et al. 2018; DINO's protocol).

Features are L2-normalised, neighbours found by exact inner product (= cosine) with faiss (or, where
faiss is not installed, the same exact search in torch: chunked matmul + topk, on the GPU when there is
one), and each of the k neighbours votes for its class with weight exp(sim / T):

    score_c(q) = sum_{i in topk(q)} exp(cos(q, x_i) / T) * [y_i = c]

(computed as exp((cos - cos_max) / T), i.e. scaled per query, so tiny T cannot overflow).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn import functional as F

from probes.result import ProbeResult, pick_best, topk_accuracy
from probes.selection import holdout_split

try:
    import faiss
except ImportError:  # e.g. a GPU image without the faiss wheel: torch_knn_search does the same exact search
    faiss = None


def knn_search(train_feats: torch.Tensor, query_feats: torch.Tensor, k: int, chunk: int = 16384
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities and indices of the k nearest train rows for each query: (Q, k) each.

    Exact inner-product search (``IndexFlatIP``), on the GPU when faiss-gpu sees one, with the queries
    searched ``chunk`` at a time so temporary memory stays bounded for large query sets. Without faiss:
    :func:`torch_knn_search`."""
    if faiss is None:
        return torch_knn_search(train_feats, query_feats, k)
    train = np.ascontiguousarray(F.normalize(train_feats.float(), dim=1).numpy())
    index = _flat_ip_index(train.shape[1])
    index.add(train)
    k = min(k, len(train))
    sims, idx = [], []
    for i in range(0, len(query_feats), chunk):
        query = np.ascontiguousarray(F.normalize(query_feats[i:i + chunk].float(), dim=1).numpy())
        s, j = index.search(query, k)
        sims.append(torch.from_numpy(s))
        idx.append(torch.from_numpy(j).long())
    if not sims:
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(sims), torch.cat(idx)


def torch_knn_search(train_feats: torch.Tensor, query_feats: torch.Tensor, k: int, chunk: int = 4096,
                     device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`knn_search` in torch: chunked (queries x train) cosine matmul + topk, on ``device`` (default: the
    GPU when there is one); (Q, k) similarities and indices on the CPU."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train = F.normalize(train_feats.float().to(device), dim=1)
    k = min(k, len(train))
    sims, idx = [], []
    for i in range(0, len(query_feats), chunk):
        q = F.normalize(query_feats[i:i + chunk].float().to(device), dim=1)
        s, j = (q @ train.T).topk(k, dim=1)
        sims.append(s.cpu())
        idx.append(j.cpu())
    if not sims:
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(sims), torch.cat(idx)


def _flat_ip_index(dim: int):
    """``IndexFlatIP``, moved to GPU 0 when faiss was built with GPU support (faiss-gpu) and sees a GPU."""
    index = faiss.IndexFlatIP(dim)
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    return index


@functools.cache
def _gpu_resources():
    """One set of faiss GPU resources (scratch memory, streams) per process, reused by every search."""
    return faiss.StandardGpuResources()


def knn_vote(sims: torch.Tensor, idx: torch.Tensor, train_labels: torch.Tensor, k: int, temperature: float,
             num_classes: int) -> torch.Tensor:
    """(Q, C) class scores from the first k of pre-computed neighbours (sorted by similarity)."""
    sims, idx = sims[:, :k].double(), idx[:, :k]
    # exp((s - s_max) / T): the same votes up to one factor per query (argmax and top-5 unchanged),
    # but no float overflow for small T (exp(1 / 0.01) alone overflows float32)
    weights = ((sims - sims[:, :1]) / temperature).exp()
    scores = torch.zeros(len(sims), num_classes, dtype=weights.dtype)
    return scores.scatter_add_(1, train_labels[idx], weights).float()


def knn_classify(train_feats: torch.Tensor, train_labels: torch.Tensor, query_feats: torch.Tensor, k: int = 20,
                 temperature: float = 0.07, num_classes: int | None = None) -> torch.Tensor:
    """(Q, C) class scores of a cosine k-NN with exp(sim / T) weighted votes (faiss search),
    each row scaled by exp(-max_sim / T) for numerical stability."""
    num_classes = num_classes or int(train_labels.max()) + 1
    sims, idx = knn_search(train_feats, query_feats, k)
    return knn_vote(sims, idx, train_labels, k, temperature, num_classes)


def knn_probe(train_feats, train_labels, test_feats, test_labels, *, ks=(10, 20, 50, 100, 200),
              temperatures=(0.01, 0.02, 0.05, 0.1), holdout_frac: float = 0.1, seed: int = 0,
              num_classes: int | None = None, holdout: torch.Tensor | None = None) -> ProbeResult:
    """Select (k, T) on a hold-out of train (``holdout``: these rows; one faiss search for the whole grid), then score the
    chosen k-NN over all of train on the test split once."""
    num_classes = num_classes or int(train_labels.max()) + 1
    fit, hold = holdout_split(train_labels, holdout_frac, seed, holdout)
    sims, idx = knn_search(train_feats[fit], train_feats[hold], max(ks))
    grid = {}
    for k in ks:
        for t in temperatures:
            scores = knn_vote(sims, idx, train_labels[fit], min(k, len(fit)), t, num_classes)
            grid[f"k={k},T={t}"] = topk_accuracy(scores, train_labels[hold], ks=(1,))[0]
    best = pick_best(grid)
    k, t = (float(part.split("=")[1]) for part in best.split(","))
    scores = knn_classify(train_feats, train_labels, test_feats, int(k), t, num_classes)
    top1, top5 = topk_accuracy(scores, test_labels)
    return ProbeResult(top1, top5, {"k": int(k), "T": t}, grid[best], grid)
