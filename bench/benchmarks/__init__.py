"""Benchmarks are data: frozen, versioned specs that fix the dataset, the evaluation resolution and
the probe protocol. A change to any protocol field is a new version (``NAME-vN``); results of different
versions are never compared. ``spec_hash`` fingerprints the protocol so records can prove what they ran."""

from __future__ import annotations

import difflib
import hashlib
import json

from pydantic import BaseModel, ConfigDict

from bench.benchmarks.transfer import TRANSFER_BENCHMARKS
from bench.errors import ConfigError

__all__ = ["BENCHMARKS", "DEFAULT_BENCHMARK", "Benchmark", "adhoc_benchmark", "available_benchmarks", "latest_version",
           "benchmark_for", "check_records", "get_benchmark"]

#: what a run without --benchmark is scored on (and, for image --data, whose protocol it takes)
DEFAULT_BENCHMARK = "imagenette64-v1"

#: fields left out of ``spec_hash``: they do not change what is measured (description, superseded_by,
#: budget: each record's config says what ran), or are checked on their own (data_fingerprint)
_NON_PROTOCOL = {"description", "superseded_by", "data_fingerprint", "budget"}
#: protocol fields added after benchmarks were published: hashed only when set (not at their default), so the
#: spec_hash of every image benchmark, and of the records made with it, stays what it was
_HASHED_IF_SET = {"frames": 0, "frame_stride": 1, "label": None, "extra_labels": (), "attentive_standardize": False,
                  "upsample": False}


class Benchmark(BaseModel):
    """One benchmark version: dataset spec, splits, eval resolution and probe hyper-parameter grids."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    description: str
    data: str
    train_split: str = "train"
    eval_split: str = "val"
    img_size: int = 32
    crop_pct: float = 1.0
    holdout_frac: float = 0.1
    split_seed: int = 0
    knn_k: tuple[int, ...] = (10, 20, 50, 100, 200)
    knn_t: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1)
    linear_lr: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    linear_wd: tuple[float, ...] = (0.0, 1e-3, 1e-2, 1e-1)
    linear_epochs: int = 30
    linear_batch_size: int = 256
    attentive_lr: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
    attentive_wd: tuple[float, ...] = (1e-2, 1e-1)
    attentive_heads: int = 4
    attentive_epochs: int = 20
    #: standardise every token channel with the train split's mean / std before the attentive probe (a BatchNorm
    #: without affine, as linear probes often have): a large offset shared by all tokens then cannot drown the rest
    attentive_standardize: bool = False
    probes: tuple[str, ...] = ("knn", "linear", "attentive")
    headline: str = "linear_top1"
    superseded_by: str | None = None
    #: sha256 of the train + eval splits' files (``BenchData.fingerprint``); None: not pinned (ad-hoc data)
    data_fingerprint: str | None = None
    #: training settings ``bench submit`` uses (backbone, crop, epochs, batch); a record's config says what ran
    budget: dict = {"backbone": "resnet18", "backbone_kwargs": {"stem": "small"}, "img_size": 32,
                    "epochs": 20, "batch_size": 256}
    #: video: frames per clip (0 = an image benchmark) and, for videofolder data, the stride between them
    frames: int = 0
    frame_stride: int = 1
    #: the label column the probes score (datasets with several, e.g. moving-shapes' direction / shape)
    label: str | None = None
    #: more label columns, each scored by the same probes as ``<column>_<probe>_top1`` (not the headline)
    extra_labels: tuple[str, ...] = ()
    #: images smaller than the evaluation crop are upsampled to it (the transfer protocol for CIFAR's 32 px) instead
    #: of being refused
    upsample: bool = False

    @property
    def is_video(self) -> bool:
        return self.frames > 0

    @property
    def grids(self) -> dict[str, dict[str, tuple]]:
        """Each probe's hyper-parameter grid, axis name -> values, named as the records' ``selected`` name them."""
        return {"knn": {"k": self.knn_k, "T": self.knn_t}, "linear": {"lr": self.linear_lr, "wd": self.linear_wd},
                "attentive": {"lr": self.attentive_lr, "wd": self.attentive_wd}}

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    def spec_hash(self) -> str:
        """sha256 (16 hex) of the canonical JSON of the protocol fields (all but description/superseded_by)."""
        protocol = self.model_dump(mode="json", exclude=_NON_PROTOCOL)
        for key, default in _HASHED_IF_SET.items():
            if getattr(self, key) == default:
                protocol.pop(key)
        text = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: what every moving-shapes version shares
_MOVING_SHAPES = dict(name="moving-shapes", data="moving-shapes", img_size=32, crop_pct=1.0, frames=8, label="direction",
                      extra_labels=("shape",), headline="attentive_top1",
                      budget={"backbone": "video_vit_tiny", "backbone_kwargs": {"patch_size": 8, "tubelet": 2},
                              "img_size": 32, "epochs": 30, "batch_size": 64},
                      data_fingerprint="792dc3949bfd92a0154b9b1ad32d426e9dc21e9962741fa4ddec9472bd79e8e1")

#: ``bench submit`` settings of the 224 px ImageNet benchmarks
_IMAGENET_BUDGET = {"backbone": "resnet18", "backbone_kwargs": {"stem": "imagenet"}, "img_size": 224, "epochs": 100,
                    "batch_size": 256}

_DEFINED = [
    Benchmark(name="imagenette-mini", version=1, data="imagenette-mini",
              description="Embedded 10-class Imagenette subset at 32 px (200 train / 50 val per class); "
                          "minutes on CPU, for smoke tests and demos.",
              data_fingerprint="c3213db0a352339f581a18a447918a6970ae69c564b03592948dcc5491d7f7e4"),
    Benchmark(name="imagenette64", version=1, data="imagenette64", img_size=32, crop_pct=1.0,
              description="Imagenette v2 at 64 px (from the data root), evaluated at 32 px.",
              data_fingerprint="c9526ba57fb8bbf92a06951edb42d6c437c66106bd6d67fe09e10f1ad4db6956"),
    # ImageNet subsets from --imagenet-root: decoded at 256 px, evaluated at 224 (resize 256, centre crop 224)
    Benchmark(name="imagenet100", version=1, data="imagenet100", img_size=224, crop_pct=0.875, budget=_IMAGENET_BUDGET,
              description="ImageNet-100 (CMC / solo-learn class list) from --imagenet-root, ImageNet's train / val "
                          "split, evaluated at 224 px."),
    Benchmark(name="imagenette", version=1, data="imagenette", img_size=224, crop_pct=0.875, budget=_IMAGENET_BUDGET,
              description="Imagenette's 10 classes from --imagenet-root with ImageNet's own train / val split "
                          "(not fast.ai's 70/30 split), evaluated at 224 px."),
    Benchmark(name="imagewoof", version=1, data="imagewoof", img_size=224, crop_pct=0.875, budget=_IMAGENET_BUDGET,
              description="Imagewoof's 10 dog breeds from --imagenet-root with ImageNet's own train / val split, "
                          "evaluated at 224 px."),
    Benchmark(name="imagenet-lowshot", version=1, data="imagenet", img_size=224, crop_pct=0.875, linear_epochs=50,
              probes=("linear_1pct", "linear_10pct"), headline="linear_1pct_top1",
              budget={**_IMAGENET_BUDGET, "backbone": "resnet50"},
              description="ImageNet-1k from --imagenet-root: linear probes fit on SimCLR's 1 % / 10 % label subsets "
                          "(hyper-parameters chosen on a hold-out of the subset), scored on the full val set."),
    # video: procedural clips; the headline needs motion (direction), shape is scored beside it
    Benchmark(version=1, superseded_by="moving-shapes-v2", **_MOVING_SHAPES,
              description="moving-shapes clips (8 frames, 32 px; 4000 train / 1000 val, rendered by seed): the "
                          "motion direction (4 classes; needs temporal information) scored by the attentive probe "
                          "over all tubelet tokens (headline), k-NN / linear on pooled clip features; the shape "
                          "(3 classes) as shape_*."),
    Benchmark(version=2, attentive_standardize=True, **_MOVING_SHAPES,
              description="moving-shapes-v1 with the attentive probe reading tokens standardised per channel by "
                          "the train split's mean / std (a trained encoder's shared token offset no longer drowns "
                          "what the tokens differ in)."),
]

# one per transfer dataset (tv: specs read through torchvision.datasets); the suites list them (bench.benchmarks.suites)
_DEFINED += [Benchmark(**spec) for spec in TRANSFER_BENCHMARKS]

#: benchmark id (NAME-vN) -> spec
BENCHMARKS: dict[str, Benchmark] = {b.id: b for b in _DEFINED}


def available_benchmarks() -> list[Benchmark]:
    """All registered benchmark versions, sorted by id."""
    return [BENCHMARKS[k] for k in sorted(BENCHMARKS)]


def latest_version(registry: dict, name: str):
    """``registry[name]`` for an id ``NAME-vN``, else the highest version of the entries named ``name``, else None
    (benchmarks and suites, :mod:`bench.benchmarks.suites`)."""
    if name in registry:
        return registry[name]
    return max((e for e in registry.values() if e.name == name), key=lambda e: e.version, default=None)


def get_benchmark(name: str) -> Benchmark:
    """``NAME-vN`` exactly, or a bare ``NAME`` for its latest version."""
    found = latest_version(BENCHMARKS, name)
    if found is not None:
        return found
    known = sorted(BENCHMARKS) + sorted({b.name for b in BENCHMARKS.values()})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown benchmark {name!r}{hint}; known: {', '.join(sorted(BENCHMARKS))}")


def check_records(benchmark: Benchmark, records: list) -> None:
    """Refuse records that claim ``benchmark``'s id but were made with another protocol (spec_hash) or on
    other data (data fingerprint): they are not results of this benchmark version."""
    want = benchmark.spec_hash()
    for r in records:
        if r.benchmark.spec_hash and r.benchmark.spec_hash != want:
            raise ConfigError(f"record {r.run_id} was made with another {benchmark.id} protocol (spec_hash "
                              f"{r.benchmark.spec_hash}, current {want}); a changed protocol needs a new version - "
                              f"move the record out of the results folder")
        if benchmark.data_fingerprint and r.data.fingerprint != benchmark.data_fingerprint:
            raise ConfigError(f"record {r.run_id} was made on other data than {benchmark.id} (data fingerprint "
                              f"{r.data.fingerprint[:12]}..., expected {benchmark.data_fingerprint[:12]}...); "
                              f"move the record out of the results folder")


def benchmark_for(benchmark: str | None = None, data: str | None = None) -> Benchmark:
    """What a run is scored on: ``benchmark`` (default DEFAULT_BENCHMARK), or with ``data`` its protocol on that
    dataset (:func:`adhoc_benchmark`; the protocol then defaults by modality). Looks at no data."""
    if data:
        return adhoc_benchmark(data, base=benchmark)
    return get_benchmark(benchmark or DEFAULT_BENCHMARK)


def adhoc_benchmark(data: str, base: str | None = None) -> Benchmark:
    """``base``'s protocol on another dataset spec (``bench run --data imagefolder:PATH``). Its id is
    ``custom-<dataset>-v1``: such results never mix with the named benchmark's. ``base`` defaults to
    imagenette64-v1, or the latest moving-shapes version for video specs (``moving-shapes[:...]``,
    ``videofolder:PATH``)."""
    import re
    from pathlib import Path

    from bench.data import is_video_spec
    video = is_video_spec(data)
    b = get_benchmark(base or ("moving-shapes" if video else DEFAULT_BENCHMARK))
    if video != b.is_video:
        kind, other = ("video", "an image") if video else ("image", "a video")
        example = get_benchmark("moving-shapes").id if video else "imagenette64-v1"
        raise ConfigError(f"dataset {data!r} is {kind} data but {b.id} is {other} benchmark; pick a "
                          f"{kind} benchmark with --benchmark (e.g. {example})")
    name = data if data.startswith("moving-shapes") else Path(data.split(":", 1)[-1]).name
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "data"
    update = {"name": f"custom-{slug}", "version": 1, "data": data, "superseded_by": None, "data_fingerprint": None,
              "description": f"{b.id} protocol on {data}"}
    if data.split(":", 1)[0] != b.data.split(":", 1)[0]:  # another dataset: its own classes, not base's label columns
        update.update(label=None, extra_labels=())
    return b.model_copy(update=update)
