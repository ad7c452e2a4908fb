"""The method contract every SSL plugin implements.

A method is an ``nn.Module`` that owns its backbone (and heads, teachers, ...). The trainer gives it
the augmented views it asked for and optimises whatever ``training_loss`` returns:

    class MyMethod(Method):
        name = "my-method"
        views = [ViewSpec.simclr(), ViewSpec.simclr()]   # one tensor per entry reaches the loss

        def __init__(self, backbone, temperature=0.1): ...
        def training_loss(self, views):                  # list[Tensor (B, 3, h, w)], normalised
            return loss  # scalar, or {"loss": loss, "term": value, "embedding": feats_of_view0}
        def on_after_backward(self): ...                 # optional (edit gradients before the step)
        def on_step_end(self, step, total_steps): ...    # optional (EMA teachers, schedules)
        @property
        def encoder(self): return self.backbone          # what the probes evaluate

A dict result may carry ``"embedding"``: detached encoder features (B, D) of ``views[0]``; the
trainer feeds them to the online linear probe and the collapse monitors instead of running the
encoder again. ``"monitor"`` (optional) points the collapse monitors at other features, e.g. the
projector output (SimSiam's collapse measure).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from bench.augment import ViewSpec


class Method(nn.Module):
    #: registry name (``bench run --method NAME``)
    name: ClassVar[str] = ""
    #: one ViewSpec per view ``training_loss`` receives (the same order)
    views: ClassVar[list[ViewSpec]] = []
    #: False for baselines that are evaluated without training (random init)
    trainable: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, **hparams):
        super().__init__()
        if hparams:
            raise TypeError(f"{type(self).__name__} got unknown hyper-parameters: {sorted(hparams)}")
        self.backbone = backbone

    def training_loss(self, views: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_after_backward(self) -> None:
        """Called after every backward pass, before gradient clipping and the optimiser step (gradients
        already synchronised under DDP): e.g. drop the gradient of parameters frozen for a while."""

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step (EMA updates, schedules)."""

    @property
    def encoder(self) -> nn.Module:
        """The module the probes evaluate: maps (B, 3, H, W) images to (B, D) features."""
        return self.backbone


def split_loss(out, method_name: str) -> tuple[torch.Tensor, dict]:
    """``training_loss``'s result -> (scalar loss, all terms); the contract's check shared by the trainer and
    ``bench submit``: a non-scalar loss raises PluginError naming the method and what it returned."""
    from bench.errors import PluginError
    terms = out if isinstance(out, dict) else {"loss": out}
    loss = terms.get("loss")
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise PluginError(f"method {method_name!r}: training_loss must return a scalar tensor "
                          f"(or a dict with a scalar 'loss'), got {type(loss).__name__}"
                          + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
    return loss, terms


def variance_covariance(z: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's anti-collapse terms of features z (N, D), computed in fp32:
    v(z) = mean_j relu(1 - sqrt(Var(z_j) + eps)) (hinge on each dimension's std) and
    c(z) = sum_{i != j} Cov(z)_ij^2 / D (decorrelation)."""
    z = z.float()
    n, d = z.shape
    z = z - z.mean(0)
    variance = torch.relu(1 - torch.sqrt(z.var(0) + eps)).mean()
    cov = z.T @ z / (n - 1)
    return variance, (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                   last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a final Linear (SimCLR / Barlow Twins projector)."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)
