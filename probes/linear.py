"""Linear probe on frozen features with the whole lr x wd grid trained in parallel.

Every grid point g is its own linear classifier (W_g, b_g); they share minibatches and are trained
as one batched model: logits_g = x W_g + b_g, loss = sum_g mean CE(logits_g, y), so each member
gets exactly its own gradient. SGD with momentum 0.9, cosine lr, L2 weight decay on W.
"""

from __future__ import annotations

import math

import torch

from probes.result import ProbeResult, pick_best, topk_accuracy
from probes.selection import holdout_split


def train_linear_grid(x: torch.Tensor, y: torch.Tensor, lrs: torch.Tensor, wds: torch.Tensor, num_classes: int, *,
                      epochs: int = 100, batch_size: int = 256, seed: int = 0, momentum: float = 0.9
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Train G = len(lrs) linear classifiers at once; returns W (D, G, C) and b (G, C).

    Inside, W is laid out (D, C, G) so the softmax runs over a strided class axis with the G members
    contiguous (several times faster on CPU than a softmax over a last axis of C = 10), and the
    cross-entropy gradient is written out (``ce_grad``) instead of going through autograd.
    """
    g, d = len(lrs), x.shape[1]
    w = torch.zeros(d, num_classes, g, device=x.device)
    b = torch.zeros(num_classes, g, device=x.device)
    bufs = [torch.zeros_like(w), torch.zeros_like(b)]
    lrs, wds = lrs.to(x.device, torch.float32), wds.to(x.device, torch.float32)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total, step = epochs * steps_per_epoch, 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx]
            logits = (xb @ w.view(d, -1)).view(len(xb), num_classes, g) + b  # (n, C, G)
            grad = ce_grad(logits, y[idx])
            gw = (xb.T @ grad.view(len(xb), -1)).view_as(w) + wds * w
            gb = grad.sum(0)
            scale = 0.5 * (1 + math.cos(math.pi * step / total))
            for p, grad_p, buf in ((w, gw, bufs[0]), (b, gb, bufs[1])):
                buf.mul_(momentum).add_(grad_p)
                p -= lrs * scale * buf
            step += 1
    return w.permute(0, 2, 1).contiguous(), b.T.contiguous()


def ce_grad(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dlogits of mean_n CE(logits[n, :, g], y[n]) for every member g: (softmax - onehot) / n.
    ``logits`` (n, C, G), classes on axis 1."""
    grad = torch.softmax(logits, dim=1)
    grad[torch.arange(len(y), device=y.device), y] -= 1.0
    return grad.div_(len(y))


def grid_logits(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, D) features, W (D, G, C), b (G, C) -> (N, G, C) logits as one matmul."""
    d, g, c = w.shape
    return (x @ w.reshape(d, g * c)).view(len(x), g, c) + b


def _standardise(fit: torch.Tensor, *others: torch.Tensor):
    mean, std = fit.mean(0, keepdim=True), fit.std(0, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (fit, *others)]


def linear_probe(train_feats, train_labels, test_feats, test_labels, *, lrs=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
                 wds=(0.0, 1e-3, 1e-2, 1e-1), epochs: int = 30, batch_size: int = 256, holdout_frac: float = 0.1,
                 seed: int = 0, num_classes: int | None = None, device=None, holdout: torch.Tensor | None = None,
                 select_on: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    """Select (lr, wd) on a hold-out of train (``holdout``: these rows), refit the chosen probe on all train, score
    test once. ``select_on`` (features, labels): select on these rows instead, the grid fit on all of train (a
    train set with nothing to spare, e.g. one shot per class; rows that are neither train nor test rows)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    num_classes = num_classes or int(train_labels.max()) + 1
    x, y = train_feats.float().to(device), train_labels.to(device)
    if select_on is None:
        fit, hold = holdout_split(train_labels, holdout_frac, seed, holdout)
        fit, hold = fit.to(device), hold.to(device)
        xf, xh, yf, yh = *_standardise(x[fit], x[hold]), y[fit], y[hold]
    else:
        xf, xh = _standardise(x, select_on[0].float().to(device))
        yf, yh = y, select_on[1].to(device)
    points = [(lr, wd) for lr in lrs for wd in wds]
    w, b = train_linear_grid(xf, yf, torch.tensor([p[0] for p in points]), torch.tensor([p[1] for p in points]),
                             num_classes, epochs=epochs, batch_size=batch_size, seed=seed)
    hold_logits = grid_logits(xh, w, b)
    grid = {f"lr={lr},wd={wd}": topk_accuracy(hold_logits[:, i].cpu(), yh.cpu(), ks=(1,))[0]
            for i, (lr, wd) in enumerate(points)}
    best = pick_best(grid)
    lr, wd = points[list(grid).index(best)]
    xa, xt = _standardise(x, test_feats.float().to(device))
    w, b = train_linear_grid(xa, y, torch.tensor([lr]), torch.tensor([wd]), num_classes, epochs=epochs,
                             batch_size=batch_size, seed=seed)
    top1, top5 = topk_accuracy(grid_logits(xt, w, b)[:, 0].cpu(), test_labels)
    return ProbeResult(top1, top5, {"lr": lr, "wd": wd}, grid[best], grid)
