"""The Lightning callbacks every training run has besides checkpointing (``bench.trainer.fit`` adds them):

- :class:`OnlineProbe`: a linear classifier on the detached features of each step, logged as ``online/acc``.
- :class:`CollapseMonitor`: ``monitor/feature_std`` and ``monitor/effective_rank`` (bench.monitors) every epoch,
  a one-line warning when the representation collapses, optionally stopping the run.
- :class:`EpochLines`: one line per epoch (``epoch 2/20 loss 5.757 online 18.6 rank 219 std 0.65 45s``) where no
  progress bar is drawn (stdout not a terminal, or ``--no-progress``).

They read what a step produced from ``SSLModule.step_features`` (detached tensors: ``embedding``, ``monitor``,
``labels``) and keep their state in the checkpoint (``state_dict``), so a resumed run continues them exactly.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F

from bench import distributed
from bench.monitors import collapse_metrics, is_collapsed

MONITOR_ROWS = 2048  # features kept per epoch for the collapse monitors


class OnlineProbe(Callback):
    """A linear classifier trained alongside the method on the detached ``embedding`` of every step (labels are
    used only here); its training top-1 (%) is logged as ``online/acc`` (step and epoch mean, progress bar).

    Its parameters are one more group of the run's optimiser (:meth:`param_groups`, given to ``SSLModule``): they
    follow the run's lr schedule and are inside the gradient-clipping norm, as when the probe was part of the
    LightningModule, so runs train exactly as before. Its loss is back-propagated in ``on_before_optimizer_step``
    (after the method's backward and AMP unscaling, before clipping and the step), under the training step's
    autocast; with several processes its gradients are averaged over the ranks, as DDP does for the method's."""

    def __init__(self, embed_dim: int, num_classes: int):
        self.probe = nn.Linear(embed_dim, num_classes)

    def param_groups(self, optimizer: str) -> list[dict]:
        """The probe's optimiser group for the run's ``optimizer`` (lars / sgd / adamw): no weight decay."""
        return [{"params": list(self.probe.parameters()), "weight_decay": 0.0,
                 "lr": 0.1 if optimizer != "adamw" else 1e-3}]

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.probe.to(trainer.strategy.root_device)  # before the optimiser is built and its state restored

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        feats = pl_module.step_features
        labels = feats["labels"]
        with torch.enable_grad(), trainer.precision_plugin.train_step_context():
            logits = self.probe(feats["embedding"])
            loss = F.cross_entropy(logits, labels)
        loss.backward()
        if distributed.is_distributed():
            for p in self.probe.parameters():
                p.grad.copy_(distributed.all_reduce_mean(p.grad))
        pl_module.log("online/acc", (logits.argmax(1) == labels).float().mean() * 100, prog_bar=True,
                      on_step=True, on_epoch=True, batch_size=len(labels))

    def state_dict(self) -> dict:
        return {"probe": self.probe.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.probe.load_state_dict(state_dict["probe"])


class CollapseMonitor(Callback):
    """Collapse monitors on the last ``rows`` ``monitor`` features of every epoch (under DDP the ranks' last rows
    gathered, so every rank takes the same decision): logged as ``monitor/<name>``, appended to :attr:`history`
    (``epoch`` added); a collapsed epoch warns (rank 0) and, with ``stop_on_collapse``, stops the run."""

    def __init__(self, stop_on_collapse: bool = False, rows: int = MONITOR_ROWS):
        self.stop_on_collapse, self.rows = stop_on_collapse, rows
        self._feats: list[torch.Tensor] = []  # this epoch's last rows, on the device
        self.history: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._feats.append(pl_module.step_features["monitor"][:self.rows])
        while sum(len(f) for f in self._feats[1:]) >= self.rows:
            self._feats.pop(0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._feats:
            return
        feats = torch.cat(self._feats)[-(self.rows // trainer.world_size):]  # one copy per epoch
        metrics = collapse_metrics(distributed.gather_uneven(feats).cpu())
        self._feats = []
        metrics["epoch"] = trainer.current_epoch
        self.history.append(metrics)
        pl_module.log_dict({f"monitor/{k}": float(v) for k, v in metrics.items() if k != "epoch"})
        if is_collapsed(metrics):
            if trainer.is_global_zero:
                warnings.warn(f"representation collapsed at epoch {trainer.current_epoch}: "
                              f"feature_std={metrics['feature_std']:.3g}, "
                              f"effective_rank={metrics['effective_rank']:.3g}", stacklevel=1)
            if self.stop_on_collapse:
                trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])


#: the epoch line's fields: logged metric -> (label, format)
EPOCH_FIELDS = {"train/loss_epoch": ("loss", ".3f"), "online/acc_epoch": ("online", ".1f"),
                "monitor/effective_rank": ("rank", ".0f"), "monitor/feature_std": ("std", ".2f")}


class EpochLines(Callback):
    """After every epoch one line through ``log`` (rank 0 only): ``epoch 2/20 loss 5.757 online 18.6 rank 219
    std 0.65 45s`` - the epoch's mean training loss, online-probe top-1 (%), effective rank and feature std of
    the collapse monitors (each only if logged), and the epoch's wall time. Must come after the callbacks that
    log those metrics."""

    def __init__(self, log: Callable[[str], None]):
        self.emit = log  # not self.log: Lightning sets that to the module's log() on every callback
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        parts += [f"{label} {float(metrics[key]):{fmt}}" for key, (label, fmt) in EPOCH_FIELDS.items() if key in metrics]
        self.emit(" ".join([*parts, f"{time.perf_counter() - self._start:.0f}s"]))


def upgrade_checkpoint(checkpoint: dict) -> None:
    """In place: a checkpoint written while the online probe and the collapse monitors were part of ``SSLModule``
    (probe weights in ``state_dict["online_probe.*"]``, the monitor history in ``ssl_bench``) gets them as these
    callbacks' states, so such runs resume. Checkpoints of this layout pass unchanged."""
    weights = checkpoint.get("state_dict", {})
    states = checkpoint.setdefault("callbacks", {})
    probe = {k.removeprefix("online_probe."): weights.pop(k) for k in [k for k in weights if k.startswith("online_probe.")]}
    if probe:
        states.setdefault(OnlineProbe.__qualname__, {"probe": probe})
    history = checkpoint.get("ssl_bench", {}).pop("monitor_history", None)
    if history is not None:
        states.setdefault(CollapseMonitor.__qualname__, {"history": history})
