"""Attentive probe (V-JEPA protocol): cross-attention pooling of frozen patch tokens with learned
queries, then a linear classifier; the lr x wd grid is trained in parallel.

For H heads with learned queries u_h (D,), over tokens x_t (after a LayerNorm without affine):

    a_ht = softmax_t( u_h . x_t / sqrt(D) ),   pooled_h = sum_t a_ht x_t,
    logits = W [LN(pooled_1); ...; LN(pooled_H)] + b

This is one cross-attention block with linear key/value maps folded into u_h and W (a single
query needs no separate W_k; W_v and W_o are linear and absorbed by the classifier), so every
grid member costs O(B T D H) - cheap enough to train G of them at once on a CPU.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from probes.result import ProbeResult, pick_best, topk_accuracy
from probes.selection import holdout_split


class AttentiveGrid:
    """G attentive probes sharing minibatches; member g has its own (u, W, b) and optimiser settings."""

    def __init__(self, dim: int, num_classes: int, heads: int, lrs, wds, device, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.g, self.h, self.d, self.c = len(lrs), heads, dim, num_classes
        self.queries = [(torch.randn(dim, heads, generator=g) * 0.02).to(device).requires_grad_() for _ in lrs]
        self.weights = [torch.zeros(heads * dim, num_classes, device=device, requires_grad=True) for _ in lrs]
        self.biases = [torch.zeros(num_classes, device=device, requires_grad=True) for _ in lrs]
        groups = [{"params": [q, w, b], "lr": lr, "weight_decay": wd}
                  for q, w, b, lr, wd in zip(self.queries, self.weights, self.biases, lrs, wds)]
        self.opt = torch.optim.AdamW(groups)
        self.base_lrs = list(lrs)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, D) tokens -> (B, G, C) logits of every member."""
        b, t, d = tokens.shape
        x = F.layer_norm(tokens.float(), (d,))
        u = torch.cat(self.queries, dim=1)                                    # (D, G*H)
        attn = torch.softmax((x @ u) / math.sqrt(d), dim=1)                   # (B, T, G*H), softmax over tokens
        pooled = torch.bmm(attn.transpose(1, 2), x)                           # (B, G*H, D)
        pooled = F.layer_norm(pooled, (d,)).view(b, self.g, self.h * d)       # (B, G, H*D)
        w = torch.stack(self.weights)                                         # (G, H*D, C)
        out = torch.bmm(pooled.transpose(0, 1), w).transpose(0, 1)            # (B, G, C)
        return out + torch.stack(self.biases)

    def fit(self, tokens: torch.Tensor, labels: torch.Tensor, epochs: int, batch_size: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        steps = epochs * math.ceil(len(tokens) / batch_size)
        step = 0
        for _ in range(epochs):
            perm = torch.randperm(len(tokens), generator=gen)
            for i in range(0, len(tokens), batch_size):
                idx = perm[i:i + batch_size]
                x, y = tokens[idx].to(self.queries[0].device), labels[idx].to(self.queries[0].device)
                out = self.logits(x)
                loss = F.cross_entropy(out.reshape(-1, self.c), y.repeat_interleave(self.g)) * self.g
                scale = 0.5 * (1 + math.cos(math.pi * step / steps))
                for group, lr in zip(self.opt.param_groups, self.base_lrs):
                    group["lr"] = lr * scale
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                step += 1

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        dev = self.queries[0].device
        return torch.cat([self.logits(tokens[i:i + batch_size].to(dev)).cpu()
                          for i in range(0, len(tokens), batch_size)])


def attentive_probe(train_tokens, train_labels, test_tokens, test_labels, *, lrs=(3e-3, 1e-2, 3e-2),
                    wds=(1e-2, 1e-1), heads: int = 4, epochs: int = 20, batch_size: int = 256,
                    holdout_frac: float = 0.1, seed: int = 0, num_classes: int | None = None,
                    device=None, standardize: bool = False, holdout: torch.Tensor | None = None) -> ProbeResult:
    """Select (lr, wd) on a hold-out of train, refit the chosen probe on all of train, score test once.
    ``standardize``: first z-score every channel with the mean / std of the train tokens (never the test's)."""
    if standardize:
        std, mean = torch.std_mean(train_tokens.float(), dim=(0, 1))
        std = std.clamp_min(1e-6)
        train_tokens, test_tokens = (train_tokens - mean) / std, (test_tokens - mean) / std
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    num_classes = num_classes or int(train_labels.max()) + 1
    fit, hold = holdout_split(train_labels, holdout_frac, seed, holdout)
    points = [(lr, wd) for lr in lrs for wd in wds]
    grid_model = AttentiveGrid(train_tokens.shape[-1], num_classes, heads, [p[0] for p in points],
                               [p[1] for p in points], device, seed)
    grid_model.fit(train_tokens[fit], train_labels[fit], epochs, batch_size, seed)
    hold_logits = grid_model.predict(train_tokens[hold])
    grid = {f"lr={lr},wd={wd}": topk_accuracy(hold_logits[:, i], train_labels[hold], ks=(1,))[0]
            for i, (lr, wd) in enumerate(points)}
    best = pick_best(grid)
    lr, wd = points[list(grid).index(best)]
    final = AttentiveGrid(train_tokens.shape[-1], num_classes, heads, [lr], [wd], device, seed)
    final.fit(train_tokens, train_labels, epochs, batch_size, seed)
    top1, top5 = topk_accuracy(final.predict(test_tokens)[:, 0], test_labels)
    return ProbeResult(top1, top5, {"lr": lr, "wd": wd, "heads": heads}, grid[best], grid)
