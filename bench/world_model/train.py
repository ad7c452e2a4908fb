"""Train an action-conditioned world model on frozen frame embeddings of PushEnv episodes.

1. ``PushEnv.random_episodes`` records ``episodes`` episodes of smooth random actions (seed
   ``data_seed``; the held-out episodes use ``data_seed + 1``).
2. A frozen :class:`~bench.world_model.encoders.FrameEncoder` embeds every frame once; the embeddings
   are cached (``<cache_dir>/world_model/<key>.pt``, sha256-checked) keyed by the encoder's weights and
   preprocessing and by the episodes.
3. :class:`~bench.world_model.predictor.ActionConditionedPredictor` is fitted with teacher-forcing L1
   plus the L1 of a ``rollout_steps``-step autoregressive rollout (AdamW, warm-up + cosine, batches
   of whole episodes).
4. ``save_world_model`` writes the weights with the config atomically; ``get_world_model`` reuses a saved
   model whose encoder key and config match, else trains one.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.data.moving_shapes import PushEnv
from bench.errors import BenchError
from bench.io import atomic_torch_save
from bench.world_model.encoders import FrameEncoder
from bench.world_model.predictor import ActionConditionedPredictor

EMBED_CACHE_VERSION = 1


class EnvConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(32, ge=8)
    max_step: float = Field(3.0, gt=0)
    radius: float = Field(3.0, gt=0)

    def make(self) -> PushEnv:
        return PushEnv(self.size, self.max_step, self.radius)


class WorldModelConfig(BaseModel):
    """Everything that determines a trained world model (besides the frozen encoder)."""

    model_config = ConfigDict(extra="forbid")
    env: EnvConfig = EnvConfig()
    episodes: int = Field(1000, ge=1)     # training episodes (random smooth actions)
    episode_len: int = Field(8, ge=1)     # actions per episode (frames = episode_len + 1)
    val_episodes: int = Field(200, ge=1)  # held-out episodes (seed data_seed + 1)
    data_seed: int = 0
    dim: int = Field(128, ge=1)           # predictor width / depth / heads (the pixel baseline uses the same)
    depth: int = Field(3, ge=1)
    heads: int = Field(4, ge=1)
    steps: int = Field(1500, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    rollout_steps: int = Field(2, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "WorldModelConfig":
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        return self

    def key(self, encoder_key: str) -> str:
        text = json.dumps({"encoder": encoder_key, **self.model_dump(mode="json")}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def embed_episodes(encoder: FrameEncoder, frames: torch.Tensor, cache_dir: str | Path | None = None,
                   data_key: str | None = None) -> torch.Tensor:
    """uint8 frames (E, T, 3, S, S) -> float32 (E, T, N, D) embeddings; cached when cache_dir and data_key are given."""
    from probes.features import tensor_sha256
    path = None
    if cache_dir is not None and data_key is not None:
        key = hashlib.sha256(f"v{EMBED_CACHE_VERSION}|{encoder.key}|{data_key}".encode()).hexdigest()[:32]
        path = Path(cache_dir) / "world_model" / f"{key}.pt"
        if path.is_file():
            try:
                entry = torch.load(path, map_location="cpu", weights_only=True)
                z = entry["z"]
                if z.shape[:2] == frames.shape[:2] and tensor_sha256(z) == entry["sha256"]:
                    return z
                warnings.warn(f"embedding cache {path} does not match (shape or checksum); recomputing", stacklevel=2)
            except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
                warnings.warn(f"embedding cache {path} is unreadable ({type(e).__name__}); recomputing", stacklevel=2)
    z = encoder(frames).float().contiguous()
    if path is not None:
        atomic_torch_save({"z": z, "sha256": tensor_sha256(z)}, path)
    return z


def episode_embeddings(encoder: FrameEncoder, cfg: WorldModelConfig, cache_dir: str | Path | None = None) -> dict:
    """{"train": (z, actions), "val": (z, actions)} for the config's episodes."""
    env = cfg.env.make()
    out = {}
    for split, n, seed in (("train", cfg.episodes, cfg.data_seed), ("val", cfg.val_episodes, cfg.data_seed + 1)):
        ep = env.random_episodes(n, cfg.episode_len, seed=seed)
        data_key = f"push|{cfg.env.model_dump_json()}|{n}|{cfg.episode_len}|{seed}"
        out[split] = (embed_episodes(encoder, ep["frames"], cache_dir, data_key), ep["actions"])
    return out


def build_predictor(encoder: FrameEncoder, cfg: WorldModelConfig) -> ActionConditionedPredictor:
    return ActionConditionedPredictor(encoder.embed_dim, 2, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                      tokens_per_frame=encoder.tokens_per_frame, max_steps=max(32, cfg.episode_len + 1))


@torch.inference_mode()
def evaluate_world_model(predictor: ActionConditionedPredictor, z: torch.Tensor, actions: torch.Tensor,
                         rollout_steps: int = 2, batch_size: int = 256) -> dict[str, float]:
    """Held-out L1: teacher forcing, the ``rollout_steps``-step rollout, and the copy baseline
    (predict "nothing changes": |z_t - z_{t+1}|) for scale."""
    was = predictor.training
    predictor.eval()
    tf = ro = 0.0
    for i in range(0, len(z), batch_size):
        terms = predictor.loss(z[i:i + batch_size], actions[i:i + batch_size], rollout_steps)
        w = len(z[i:i + batch_size]) / len(z)
        tf += float(terms["teacher_forcing"]) * w
        ro += float(terms["rollout"]) * w
    predictor.train(was)
    k = min(rollout_steps, actions.shape[1])
    return {"teacher_forcing": tf, "rollout": ro, "copy_baseline": float((z[:, :-1] - z[:, 1:]).abs().mean()),
            "copy_baseline_rollout": float((z[:, 0] - z[:, k]).abs().mean())}


def train_world_model(encoder: FrameEncoder, cfg: WorldModelConfig, cache_dir: str | Path | None = None,
                      progress: bool = False) -> tuple[ActionConditionedPredictor, dict]:
    """Embed (cached) and fit; returns the predictor (eval mode) and a summary with held-out losses
    before and after training."""
    start = time.perf_counter()
    data = episode_embeddings(encoder, cfg, cache_dir)
    embed_s = time.perf_counter() - start
    (z, actions), (zv, av) = data["train"], data["val"]
    torch.manual_seed(cfg.seed)
    predictor = build_predictor(encoder, cfg)
    before = evaluate_world_model(predictor, zv, av, cfg.rollout_steps)
    opt = torch.optim.AdamW(predictor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / max(1, cfg.steps)))))
    g = torch.Generator().manual_seed(cfg.seed)
    predictor.train()
    t0, last = time.perf_counter(), {}
    for step in range(cfg.steps):
        idx = torch.randint(len(z), (min(cfg.batch_size, len(z)),), generator=g)
        terms = predictor.loss(z[idx], actions[idx], cfg.rollout_steps)
        if not torch.isfinite(terms["loss"]):
            raise BenchError(f"world-model loss is {float(terms['loss'].detach())} at step {step}; lower it with --set wm.lr=...")
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(predictor.parameters(), 1.0)
        opt.step()
        sched.step()
        last = {k: float(v.detach()) for k, v in terms.items()}
        if progress and (step % 250 == 0 or step == cfg.steps - 1):
            print(f"  world model step {step + 1}/{cfg.steps}: loss {last['loss']:.4f} (teacher forcing "
                  f"{last['teacher_forcing']:.4f}, rollout {last['rollout']:.4f})", file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t0
    predictor.eval()
    after = evaluate_world_model(predictor, zv, av, cfg.rollout_steps)
    info = {"encoder": encoder.label, "encoder_key": encoder.key, "config": cfg.model_dump(mode="json"),
            "val_before": before, "val_after": after, "last_train_terms": last,
            "embed_time_s": round(embed_s, 2), "train_time_s": round(train_s, 2),
            "params": sum(p.numel() for p in predictor.parameters())}
    return predictor, info


def save_world_model(path: str | Path, predictor: ActionConditionedPredictor, info: dict) -> Path:
    """Weights + config + training summary, atomically (loadable with weights_only=True)."""
    return atomic_torch_save({"state_dict": predictor.state_dict(), "info": info}, path)


def load_world_model(path: str | Path, encoder: FrameEncoder) -> tuple[ActionConditionedPredictor, dict]:
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        info = entry["info"]
        cfg = WorldModelConfig(**info["config"])
    except Exception as e:  # noqa: BLE001
        raise BenchError(f"{path} is not a readable world model ({type(e).__name__}); delete it to retrain") from None
    if info.get("encoder_key") != encoder.key:
        raise BenchError(f"{path} was trained on another encoder ({info.get('encoder')}); delete it to retrain")
    predictor = build_predictor(encoder, cfg)
    predictor.load_state_dict(entry["state_dict"])
    return predictor.eval(), info


def get_world_model(encoder: FrameEncoder, cfg: WorldModelConfig, models_dir: str | Path,
                    cache_dir: str | Path | None = None, retrain: bool = False,
                    progress: bool = False) -> tuple[ActionConditionedPredictor, dict, Path]:
    """The saved world model for (encoder, config) under ``models_dir``, trained and saved first if absent."""
    path = Path(models_dir) / f"{encoder.label.replace(':', '-').replace('/', '-')}-{cfg.key(encoder.key)}.pt"
    if path.is_file() and not retrain:
        try:
            predictor, info = load_world_model(path, encoder)
            return predictor, {**info, "reused": True}, path
        except BenchError as e:
            warnings.warn(f"{e}; retraining", stacklevel=2)
    predictor, info = train_world_model(encoder, cfg, cache_dir, progress)
    save_world_model(path, predictor, info)
    return predictor, {**info, "reused": False}, path
