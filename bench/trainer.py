"""One Lightning setup that trains every method.

``SSLModule`` wraps a :class:`methods.base.Method`: it augments uint8 batches on the device into the
views the method declares and optimises the method's loss (LARS / SGD / AdamW, warm-up + cosine lr, optionally
a cosine weight decay). The online linear probe and the collapse monitors are callbacks (bench.callbacks).
``fit(method, data, cfg, run_dir)`` runs it and returns what the run record needs.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from bench import distributed
from bench.augment import ViewAugmenter
from bench.callbacks import CollapseMonitor, EpochLines, OnlineProbe, upgrade_checkpoint
from bench.config import TrainConfig
from bench.console import is_terminal
from bench.cpu_bf16 import FastCPUBF16
from bench.data.streaming import EncodedBatch
from bench.errors import ConfigError, DataError, Interrupted, TrainingError
from bench.io import atomic_torch_save, checksum_path
from bench.monitors import is_collapsed
from bench.schedules import cosine_schedule, warmup_cosine
from methods.base import Method, split_loss

# Lightning sets its loggers to INFO on import (GPU/TPU banners, tips); keep the console for our own output.
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)

class _BatchIndexed(Dataset):
    """Indexed by a list of indices: one tensor gather per batch, no per-image Python work."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx)
        return self.images[idx], self.labels[idx]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's data order: a resumed run replays exactly."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


def step_seed(seed: int, step: int) -> int:
    """The seed of one optimiser step's augmentation (and dropout): a run resumed at any step replays exactly."""
    return (seed * 2_000_029 + step * 104_729 + 1) % (2**63)


class EpochBatchSampler(Sampler):
    """Shuffled full batches whose order depends only on (seed, epoch); Lightning calls ``set_epoch``.
    ``resume_at(epoch, done)`` makes that epoch's next pass skip the ``done`` batches already trained on.

    With W processes (DDP; rank and world size from torch.distributed when iteration starts, unless given)
    each global batch of ``batch_size`` is cut into W contiguous shards and rank r yields the r-th: the ranks
    see disjoint images that together are the single-process batch, and the number of steps, the lr schedule
    and resume do not depend on W."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int | None = None, world_size: int | None = None):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0
        self.rank, self.world_size = rank, world_size
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, done: int) -> None:
        self._skip = (epoch, done)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch)))
        batches = order[: len(self) * self.batch_size].view(len(self), self.batch_size)
        skip = self._skip[1] if self._skip and self._skip[0] == self.epoch else 0
        self._skip = None
        rank = distributed.rank() if self.rank is None else self.rank
        world = distributed.world_size() if self.world_size is None else self.world_size
        if self.batch_size % world:
            raise TrainingError(f"batch size {self.batch_size} cannot be split over {world} processes; "
                                f"use a multiple of {world}")
        share = self.batch_size // world
        yield from batches[skip:, rank * share:(rank + 1) * share]


def train_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 views: Sequence = ()) -> DataLoader:
    """Batches of (uint8 images, labels) in :class:`EpochBatchSampler` order. A streamed split
    (:class:`~bench.data.streaming.StreamedImages`) gives instead each of ``views`` (sized ViewSpecs) cropped from
    the full images, decoded in DataLoader worker processes (:func:`bench.data.parallel.decode_workers`)."""
    from bench.data.streaming import StreamedImages, StreamedViews
    streamed = isinstance(images, StreamedImages)
    # on a GPU the workers only read the files' bytes and the trainer decodes them there
    ds = StreamedViews(images, labels, views, seed, device_decode=torch.cuda.is_available()) if streamed \
        else _BatchIndexed(images, labels)
    if len(ds) < batch_size:
        raise TrainingError(f"batch size {batch_size} is larger than the training set ({len(ds)} images); lower --batch-size")
    sampler = EpochBatchSampler(len(ds), batch_size, seed)
    workers = 0
    if streamed:
        from bench.data.parallel import decode_workers
        workers = decode_workers() if decode_workers() > 1 else 0
    return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=workers, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers else None, pin_memory=torch.cuda.is_available())


class SSLModule(L.LightningModule):
    """``extra_param_groups``: optimiser groups of callbacks that train parameters with the method's optimiser
    and schedule (the online probe). After each ``training_step``, ``step_features`` holds what callbacks may
    read of that step, detached: ``embedding`` (the encoder's features of the first view, or the method's
    ``embedding`` term), ``monitor`` (the method's ``monitor`` term, else the embedding) and ``labels``."""

    def __init__(self, method: Method, cfg: TrainConfig, steps_per_epoch: int,
                 sampler: EpochBatchSampler | None = None, extra_param_groups: Sequence[dict] = ()):
        super().__init__()
        self.method, self.cfg, self.sampler = method, cfg, sampler
        self.augment = ViewAugmenter(method.views, cfg.img_size)
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, steps_per_epoch * cfg.epochs)
        self.extra_param_groups = list(extra_param_groups)
        self.images_seen = 0  # training samples (global batch); views_seen: the augmented views the loss saw
        self.views_seen = 0
        self.time_before_resume = 0.0  # training seconds of earlier processes of this run (from the checkpoint)
        self.session_start = time.perf_counter()
        self.step_features: dict[str, torch.Tensor] = {}

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if isinstance(images, str):  # a streamed file that cannot be decoded (bench.data.streaming.StreamedViews)
            raise DataError(images)
        if isinstance(images, EncodedBatch):  # streamed, decoded here on the device
            images = images.views(self.augment.specs, self.device)
        # a run resumed at any step replays its views; under DDP each rank draws its own (rank 0: as one process)
        torch.manual_seed(step_seed(self.cfg.seed, self.global_step) + self.global_rank)
        views = self.augment(images)  # streamed splits give each view's crop already (bench.data.streaming)
        if uses_channels_last(self.cfg, views[0]):
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        loss, terms = split_loss(self.method.training_loss(views), self.method.name)
        if not torch.isfinite(loss):
            raise TrainingError(f"method {self.method.name!r}: loss is {loss.item()} at step {self.global_step} "
                                f"(epoch {self.current_epoch}); lower the lr or check the loss")
        emb = terms.get("embedding")
        if emb is None:
            with torch.no_grad():
                emb = self.method.encoder(views[0])
        emb = emb.detach().float()
        self.images_seen += len(labels) * self.trainer.world_size  # every rank counts the global batch
        self.views_seen += sum(len(v) for v in views) * self.trainer.world_size
        # a method may point the collapse monitors at its projector output
        self.step_features = {"embedding": emb, "monitor": terms.get("monitor", emb).detach().float(), "labels": labels}
        logs = {f"train/{k}": v.detach().float() for k, v in terms.items()
                if k not in ("embedding", "monitor") and isinstance(v, torch.Tensor) and v.ndim == 0}
        self.log_dict(logs, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(labels))
        return loss

    def on_train_batch_start(self, batch, batch_idx):
        if self.cfg.weight_decay_end is not None:  # DINO / I-JEPA: wd by a cosine from weight_decay to weight_decay_end
            wd = cosine_schedule(self.cfg.weight_decay, self.cfg.weight_decay_end, self.global_step, self.total_steps)
            for group in self.optimizers().optimizer.param_groups:
                if group.get("scheduled_wd"):
                    group["weight_decay"] = wd

    def on_after_backward(self):
        self.method.on_after_backward()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.method.on_step_end(self.global_step, self.total_steps)

    @property
    def train_time_s(self) -> float:
        """Training seconds over every process of this run (a resumed run adds its earlier processes' time)."""
        return self.time_before_resume + time.perf_counter() - self.session_start

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ssl_bench"] = {"images_seen": self.images_seen, "views_seen": self.views_seen,
                                   "train_time_s": self.train_time_s}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        upgrade_checkpoint(checkpoint)  # runs interrupted before the probe and monitors were callbacks
        state = checkpoint.get("ssl_bench", {})
        if "views_seen" in state:
            self.images_seen, self.views_seen = state["images_seen"], state["views_seen"]
        else:  # checkpoints before views_seen existed counted views as images_seen; the steps give the samples
            self.images_seen = checkpoint["global_step"] * self.cfg.batch_size
            self.views_seen = state.get("images_seen", 0)
        self.time_before_resume = float(state.get("train_time_s", 0.0))
        done = checkpoint["global_step"] - checkpoint["epoch"] * self.steps_per_epoch
        if self.sampler is not None and 0 < done < self.steps_per_epoch:  # saved mid-epoch (SIGTERM, Ctrl-C)
            self.sampler.resume_at(checkpoint["epoch"], done)

    def configure_optimizers(self):
        cfg = self.cfg
        decay, no_decay = [], []
        for name, p in self.method.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)  # biases and norm weights: no wd, no LARS
        groups = [{"params": decay, "weight_decay": cfg.weight_decay, "scheduled_wd": True},
                  {"params": no_decay, "weight_decay": 0.0}, *self.extra_param_groups]
        lr = cfg.scaled_lr
        if cfg.optimizer == "lars":
            from timm.optim import Lars
            # biases / norm weights (wd 0) are excluded from the trust-ratio adaptation (always_adapt=False)
            opt = Lars(groups, lr=lr, momentum=cfg.momentum, trust_coeff=cfg.lars_eta, trust_clip=cfg.lars_clip)
        elif cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
        else:
            opt = torch.optim.AdamW(groups, lr=lr)
        warmup = int(cfg.warmup_epochs * self.steps_per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.total_steps, warmup, cfg.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@dataclass
class TrainResult:
    encoder: nn.Module
    images_seen: int   # training samples
    train_time_s: float
    epochs: int
    monitors: dict = field(default_factory=dict)          # last epoch's collapse metrics
    monitor_history: list = field(default_factory=list)
    views_seen: int = 0  # augmented views (SimCLR: 2 per sample, DINO: 2 + local crops)
    collapsed: bool = False
    checkpoint: str | None = None


class CheckpointOnInterrupt(Callback):
    """SIGTERM (SLURM preemption, ``kill``), Ctrl-C or a training fault (NaN loss) saves last.ckpt before the
    run stops. Lightning raises these between steps or before the backward pass, so the weights saved are the
    last good ones and ``bench train --resume`` continues from the exact step."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt, TrainingError)):
            trainer.save_checkpoint(self.path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written via temp file + rename (a kill mid-save leaves the previous last.ckpt intact), with their
    sha256 beside them (``last.ckpt.sha256``, checked before a resume: :func:`bench.runner.check_checkpoint`)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path, checksum=True)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        checksum_path(path).unlink(missing_ok=True)


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 / AMX): without it, PyTorch emulates bf16
    and a bf16-mixed CPU run is ~10x slower than fp32 (measured: vit_tiny at 32 px, AVX2-only AMD EPYC)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def widens_cpu_bf16(cfg: TrainConfig) -> bool:
    """bf16 autocast on a CPU without native bfloat16: ``fit`` runs it under ``bench.cpu_bf16.FastCPUBF16``."""
    return _precision(cfg).startswith("bf16") and not torch.cuda.is_available() and not cpu_has_native_bf16()


def _check_execution(cfg: TrainConfig, method: Method) -> None:
    if widens_cpu_bf16(cfg):
        warnings.warn(f"precision {cfg.precision!r} on a CPU without native bfloat16 "
                      f"({torch.backends.cpu.get_cpu_capability()}): its matrix products run through the fp32 kernels "
                      f"(bench.cpu_bf16: same results as bf16 hardware), still ~2x slower than fp32 here; "
                      f"--set precision=32-true is faster (and a different config, so a separate leaderboard row)",
                      stacklevel=2)
    if cfg.strategy == "fsdp":
        from methods.ema import EMATeacher
        if not torch.cuda.is_available():
            raise ConfigError("strategy 'fsdp' needs CUDA GPUs (Lightning's FSDP has no CPU mode); use --strategy ddp")
        if cfg.optimizer == "lars":
            raise ConfigError("LARS needs whole parameters for its trust ratios, FSDP shards them: "
                              "use --strategy ddp or --optimizer adamw / sgd")
        if any(isinstance(m, EMATeacher) for m in method.modules()):
            raise ConfigError(f"method {method.name!r} has an EMA teacher, whose update needs whole parameters: "
                              f"use --strategy ddp")
    gpus = torch.cuda.device_count()
    if gpus and cfg.devices > gpus:
        raise ConfigError(f"--devices {cfg.devices} but this machine has {gpus} GPU(s)")


def uses_channels_last(cfg: TrainConfig, images: torch.Tensor) -> bool:
    """Whether a run keeps weights and views channels-last: images (N, 3, H, W) only - clips (N, T, 3, H, W)
    and their Conv3d tubelet weights have no channels-last layout."""
    return cfg.channels_last and images.ndim == 4


def fit(method: Method, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, run_dir: str | Path,
        num_classes: int | None = None, progress: bool = True, resume: bool = False,
        callbacks: Sequence[Callback] = (), log: Callable[[str], None] | None = print) -> TrainResult:
    """Train ``method`` on uint8 ``images`` (labels feed only the online probe); checkpoints under run_dir.
    ``cfg.devices`` x ``cfg.num_nodes`` processes train with Lightning's DDP / FSDP (its launcher starts the
    processes, or torchrun / SLURM srun did); ``callbacks`` are added to the Trainer's (``bench perf`` times steps).
    ``progress``: a progress bar when stdout is a terminal; without one (not a terminal, or ``progress=False``)
    rank 0 sends one line per epoch to ``log`` (:class:`bench.callbacks.EpochLines`; ``None``: silent)."""
    run_dir = Path(run_dir)
    _check_execution(cfg, method)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    loader = train_loader(images, labels, cfg.batch_size, cfg.seed,
                          views=[v.with_size(cfg.img_size) for v in method.views])
    num_classes = num_classes or int(labels.max()) + 1
    probe = OnlineProbe(method.encoder.embed_dim, num_classes) if cfg.online_probe else None
    module = SSLModule(method, cfg, steps_per_epoch=len(loader), sampler=loader.sampler,
                       extra_param_groups=probe.param_groups(cfg.optimizer) if probe else ())
    monitor = CollapseMonitor(stop_on_collapse=cfg.stop_on_collapse)
    if uses_channels_last(cfg, images):
        method.to(memory_format=torch.channels_last)
    if cfg.compile:
        method.backbone.compile()  # in place: parameter names (checkpoints, encoder.pt) do not change
    # one file, last.ckpt, rewritten (atomically) after every epoch
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)
    last = run_dir / "checkpoints" / "last.ckpt"
    bar = progress and is_terminal()
    # EpochLines reads what the probe and the monitors logged: it comes after them
    callbacks = [ckpt, CheckpointOnInterrupt(last), *([probe] if probe else []), monitor, *callbacks]
    if bar:
        from lightning.pytorch.callbacks import RichProgressBar
        callbacks.append(RichProgressBar(leave=True))
    elif log is not None:
        callbacks.append(EpochLines(log))
    had_process_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator="auto", precision=_precision(cfg),
        devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy,
        sync_batchnorm=cfg.sync_batchnorm and cfg.world_size > 1 and torch.cuda.is_available(),  # GPU-only in torch
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], logger=CSVLogger(run_dir, name="logs", version=f"resumed-{int(time.time())}" if resume else ""), default_root_dir=run_dir,
        gradient_clip_val=cfg.grad_clip, enable_progress_bar=bar, enable_model_summary=False,
        log_every_n_steps=max(1, min(50, len(loader))), use_distributed_sampler=False, num_sanity_val_steps=0,
    )
    module.session_start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # per-rank step logs are what we want
        try:
            with FastCPUBF16() if widens_cpu_bf16(cfg) else contextlib.nullcontext():
                trainer.fit(module, train_dataloaders=loader, ckpt_path=str(last) if resume and last.exists() else None,
                            weights_only=True)  # a checkpoint is data: no pickled code runs on resume
        except SystemExit as e:  # SIGTERMException, or Lightning's exit after Ctrl-C
            if not (isinstance(e, SIGTERMException) or trainer.interrupted):
                raise
            why = "SIGTERM" if isinstance(e, SIGTERMException) else "Ctrl-C"
            raise Interrupted(f"stopped by {why} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                              f"checkpoint saved in {last}; continue with: bench train --resume {run_dir}",
                              run_dir=run_dir) from None
        except TrainingError as e:
            raise TrainingError(f"{e}; the last good weights are in {last}") from None
        finally:
            if cfg.compile:
                method.backbone._compiled_call_impl = None  # probes run the plain module (no recompiles in eval)
            if not had_process_group and torch.distributed.is_available() and torch.distributed.is_initialized():
                # the group Lightning made for training ends with it: rank 0 goes on alone (probing, records)
                torch.distributed.destroy_process_group()
    history = monitor.history
    monitors = {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}
    return TrainResult(
        encoder=method.encoder, images_seen=module.images_seen, views_seen=module.views_seen,
        train_time_s=module.train_time_s,
        epochs=trainer.current_epoch, monitors=monitors, monitor_history=history,
        collapsed=bool(history) and is_collapsed(history[-1]), checkpoint=str(last) if last.exists() else None,
    )
