"""futures-v1: does predicting pixels average two equally likely futures, and does predicting embeddings not?

On :func:`~bench.data.moving_shapes.turning_shapes` clips (after the past, the shape turns left or right
with p = 0.5), two predictors see the same past and get the same width, steps, batches and seed:

- **pixel**: an MLP from the past frames' pixels to the future frames' pixels (both area-downsampled to
  ``pixel_size``), loss MSE. Its optimum is the conditional mean: the average of the two turns, a blur.
- **jepa**: an MLP from the frozen clip encoder's embedding of the past to its embedding of the future
  (V-JEPA style, loss L1), the encoder never trained here.

Per test clip the candidates are its four branches (the two turns, straight on, back) and ``other_clips``
other clips' futures; the JEPA prediction retrieves its nearest candidate embedding (cosine), the pixel
prediction its nearest candidate frames (MSE), and the metrics (:mod:`bench.futures.metrics`) say how often
that is a future that can happen, how sharp the pixel prediction is, and whether it sits at the mean.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from bench.augment import eval_transform
from bench.data.moving_shapes import BRANCHES, turning_shapes
from bench.errors import ConfigError
from bench.futures import metrics as M
from bench.futures.spec import FuturesSpec
from bench.versioned_spec import NON_PROTOCOL
from bench.world_model.encoders import grid_tokens, random_backbone

#: ``--encoder random``: a seeded random-init video ViT, the moving-shapes benchmarks' budget backbone
RANDOM_VIDEO_VIT = dict(name="video_vit_tiny", img_size=32, patch_size=8, tubelet=2)


class ClipEncoder(nn.Module):
    """A frozen video backbone: uint8 clips (N, T, 3, S, S) -> (N, t * grid * grid * D), each tubelet slot's
    tokens pooled onto ``grid x grid`` cells and layer-normed (:func:`grid_tokens`), flattened."""

    def __init__(self, backbone: nn.Module, img_size: int, grid: int, label: str):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.img_size, self.grid, self.label = img_size, grid, label

    @property
    def key(self) -> str:
        from probes.features import weights_hash
        return hashlib.sha256(f"clip|{weights_hash(self.backbone)}|{self.img_size}|{self.grid}".encode()).hexdigest()[:24]

    @torch.inference_mode()
    def forward(self, clips: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(clips), batch_size):
            x = eval_transform(clips[i:i + batch_size], self.img_size)
            t = self.backbone.grid(x)[0]
            tok = self.backbone.tokens(x).float()  # (B, t*h*w, D), time outermost
            cells = grid_tokens(tok.reshape(len(tok) * t, -1, tok.shape[-1]), self.grid)
            out.append(cells.reshape(len(tok), -1))
        return torch.cat(out)


def load_clip_encoder(spec: str, grid: int = 2, seed: int = 0) -> ClipEncoder:
    """``random`` (a random-init video ViT seeded by ``seed``) or a ``bench train`` run folder with a video
    backbone (e.g. a V-JEPA run on moving-shapes)."""
    if spec == "random":
        return ClipEncoder(random_backbone(RANDOM_VIDEO_VIT, seed), RANDOM_VIDEO_VIT["img_size"], grid,
                           label="random-video-vit")
    path = Path(spec)
    if not (path / "run.json").is_file():
        raise ConfigError(f"--encoder {spec!r} is neither 'random' nor a run folder (with run.json + encoder.pt)")
    from bench.runner import load_encoder
    backbone, info = load_encoder(path)
    if not hasattr(backbone, "tubelet"):
        raise ConfigError(f"{path}: its encoder is a {type(backbone).__name__}, not a video backbone "
                          f"(video_vit_*); futures-v1 embeds clips")
    return ClipEncoder(backbone, int(info["config"].get("img_size", 32)), grid,
                       label=f"{info.get('method', 'run')}:{path.name}")


class FuturePredictor(nn.Module):
    """The MLP both predictors are: in -> hidden -> hidden -> out (GELU)."""

    def __init__(self, d_in: int, d_out: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fit(x: torch.Tensor, y: torch.Tensor, spec: FuturesSpec, loss: str, seed: int) -> tuple[FuturePredictor, dict]:
    """Train a :class:`FuturePredictor` x (N, D_in) -> y (N, D_out) for ``spec.steps`` AdamW steps (batches drawn
    by ``seed``); returns it and the training loss at the first and last step."""
    torch.manual_seed(seed)
    model = FuturePredictor(x.shape[1], y.shape[1], spec.hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    g = torch.Generator().manual_seed(seed)
    crit = F.l1_loss if loss == "l1" else F.mse_loss
    losses = []
    for _ in range(spec.steps):
        idx = torch.randint(len(x), (min(spec.batch_size, len(x)),), generator=g)
        value = crit(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        losses.append(value.item())
    return model.eval(), {"loss": loss, "first_loss": round(losses[0], 6), "last_loss": round(losses[-1], 6)}


def pixels(clips: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (..., T, 3, S, S) -> float in [0, 1], area-downsampled to (..., T, 3, size, size)."""
    x = clips.float() / 255
    lead = x.shape[:-3]
    return F.adaptive_avg_pool2d(x.reshape(-1, *x.shape[-3:]), size).reshape(*lead, 3, size, size)


def other_clips(n: int, k: int) -> torch.Tensor:
    """(n, k) indices of the clips whose futures are clip i's impossible "other clip" candidates: the next k
    clips, cyclically (never clip i itself while k < n)."""
    return (torch.arange(n)[:, None] + torch.arange(1, k + 1)[None]) % n


class FuturesRecord(BaseModel):
    """One ``bench futures`` run: ``results/<benchmark>/<run_id>.json``."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    run_id: str = Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
    benchmark: dict[str, Any]            # name, version, spec_hash
    spec: dict[str, Any]                 # every protocol setting
    encoder: str
    encoder_key: str
    seed: int
    data: dict[str, str]                 # train / test clip fingerprints
    metrics: dict[str, float]
    training: dict[str, dict[str, Any]]  # pixel / jepa: loss, first / last training loss
    examples: list[dict[str, Any]] = []  # a few test clips: turn, retrieved candidates (for the strip)
    git_sha: str | None = None
    env: dict[str, Any] = {}
    hardware: dict[str, Any] = {}
    created_at: str = ""
    wall_time_s: float = 0.0


def _fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def run_futures(encoder: ClipEncoder, spec: FuturesSpec, seed: int = 0, examples: int = 3,
                log: Callable[[str], None] | None = None) -> tuple[FuturesRecord, dict[str, torch.Tensor]]:
    """Render the clips, train both predictors, score them; returns the record (not written) and the tensors of
    the first ``examples`` test clips for :func:`bench.futures.report.strip_image`."""
    from bench.records import collect_env, collect_hardware, git_sha, new_run_id
    log = log or (lambda msg: None)
    start = time.perf_counter()
    train = turning_shapes(spec.n_train, spec.past, spec.future, spec.size, spec.train_seed)
    test = turning_shapes(spec.n_test, spec.past, spec.future, spec.size, spec.test_seed)
    happened = train["futures"][torch.arange(spec.n_train), train["turn"]]  # training sees only what happened
    log(f"{spec.id}: {spec.n_train} train / {spec.n_test} test clips; embedding with {encoder.label}")
    z_past, z_fut = encoder(train["past"]), encoder(happened)
    t_past, t_branches = encoder(test["past"]), encoder(test["futures"].flatten(0, 1))  # (N*4, D)
    s = spec.pixel_size
    log(f"training the pixel and jepa predictors ({spec.steps} steps each)")
    pixel_model, pixel_info = fit(pixels(train["past"], s).flatten(1), pixels(happened, s).flatten(1), spec, "mse", seed)
    jepa_model, jepa_info = fit(z_past, z_fut, spec, spec.jepa_loss, seed)
    with torch.no_grad():
        pred_px = pixel_model(pixels(test["past"], s).flatten(1)).view(spec.n_test, spec.future, 3, s, s)
        pred_z = jepa_model(t_past)
    others, kinds = other_clips(spec.n_test, spec.other_clips), BRANCHES + ("other_clip",) * spec.other_clips
    n = torch.arange(spec.n_test)
    branch_px = pixels(test["futures"], s)  # (N, 4, F, 3, s, s)
    happened_px, happened_z = branch_px[n, test["turn"]], t_branches.view(spec.n_test, 4, -1)[n, test["turn"]]
    cand_z = torch.cat([t_branches.view(spec.n_test, 4, -1), happened_z[others]], 1)
    cand_px = torch.cat([branch_px, happened_px[others]], 1).flatten(2)
    jepa_idx, pixel_idx = M.retrieve_cosine(pred_z, cand_z), M.retrieve_mse(pred_px.flatten(1), cand_px)
    jepa_rates = M.retrieval_rates(jepa_idx, kinds, test["turn"])
    pixel_rates = M.retrieval_rates(pixel_idx, kinds, test["turn"])
    blur = M.blur_distances(pred_px, branch_px[:, 0], branch_px[:, 1])
    mean_future = (branch_px[:, 0] + branch_px[:, 1]) / 2
    metrics = {"pixel_sharpness": M.sharpness(pred_px, happened_px),
               "mean_future_sharpness": M.sharpness(mean_future, happened_px),
               "pixel_mse_to_mean": blur["to_mean"], "pixel_mse_to_nearer": blur["to_nearer"],
               "mean_mse_to_future": blur["mean_to_future"],
               **{f"jepa_retrieval_{k}": v for k, v in jepa_rates.items() if not k.startswith("chance")},
               **{f"pixel_retrieval_{k}": v for k, v in pixel_rates.items() if not k.startswith("chance")},
               "chance_plausible": jepa_rates["chance_plausible"], "chance_happened": jepa_rates["chance_happened"]}
    metrics = {k: round(v, 6) for k, v in metrics.items()}
    log("  " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    shown = list(range(min(examples, spec.n_test)))
    cand_clips = torch.cat([test["futures"], test["futures"][n, test["turn"]][others]], 1)  # (N, K, F, 3, S, S)
    tensors = {"past": test["past"][shown], "futures": test["futures"][shown, :2],
               "pixel": pred_px[shown].clamp(0, 1), "retrieved": cand_clips[shown, jepa_idx[shown]]}
    record = FuturesRecord(
        run_id=new_run_id(f"futures-{encoder.label.split(':')[0]}", seed),
        benchmark={"name": spec.name, "version": spec.version, "spec_hash": spec.spec_hash()},
        spec=spec.model_dump(mode="json", exclude=NON_PROTOCOL), encoder=encoder.label,
        encoder_key=encoder.key, seed=seed,
        data={"train": _fingerprint(train["past"], happened), "test": _fingerprint(test["past"], test["futures"],
                                                                                 test["turn"])},
        metrics=metrics, training={"pixel": pixel_info, "jepa": jepa_info},
        examples=[{"clip": i, "turn": BRANCHES[int(test["turn"][i])], "jepa_retrieved": kinds[int(jepa_idx[i])],
                   "pixel_retrieved": kinds[int(pixel_idx[i])]} for i in shown],
        git_sha=git_sha(Path(__file__).resolve().parents[2]), env=collect_env(), hardware=collect_hardware(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_time_s=round(time.perf_counter() - start, 2))
    return record, tensors


def write_futures_record(record: FuturesRecord, results_dir="results") -> Path:
    """``<results_dir>/<benchmark id>/<run_id>.json``, atomically, never replacing an existing file."""
    from bench.io import atomic_write_json
    bench_id = f"{record.benchmark['name']}-v{record.benchmark['version']}"
    return atomic_write_json(Path(results_dir) / bench_id / f"{record.run_id}.json", record.model_dump(mode="json"),
                             exclusive=True)
