"""Benchmarks are data: frozen, versioned specs that fix the dataset, the evaluation resolution and
the probe protocol. A change to any protocol field is a new version (``NAME-vN``); results of different
versions are never compared. ``spec_hash`` fingerprints the protocol so records can prove what they ran."""

from __future__ import annotations

import difflib
import hashlib
import json

from pydantic import BaseModel, ConfigDict

from bench.errors import ConfigError

__all__ = ["BENCHMARKS", "Benchmark", "adhoc_benchmark", "available_benchmarks", "get_benchmark"]

#: fields that do not change what is measured (left out of ``spec_hash``)
_NON_PROTOCOL = {"description", "superseded_by"}


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
    probes: tuple[str, ...] = ("knn", "linear", "attentive")
    headline: str = "linear_top1"
    superseded_by: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    def spec_hash(self) -> str:
        """sha256 (16 hex) of the canonical JSON of the protocol fields (all but description/superseded_by)."""
        protocol = self.model_dump(mode="json", exclude=_NON_PROTOCOL)
        text = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_DEFINED = [
    Benchmark(name="imagenette-mini", version=1, data="imagenette-mini",
              description="Embedded 10-class Imagenette subset at 32 px (200 train / 50 val per class); "
                          "minutes on CPU, for smoke tests and demos."),
    Benchmark(name="imagenette64", version=1, data="imagenette64", img_size=32, crop_pct=1.0,
              description="Imagenette v2 at 64 px (from the data root), evaluated at 32 px."),
]

#: benchmark id (NAME-vN) -> spec
BENCHMARKS: dict[str, Benchmark] = {b.id: b for b in _DEFINED}


def available_benchmarks() -> list[Benchmark]:
    """All registered benchmark versions, sorted by id."""
    return [BENCHMARKS[k] for k in sorted(BENCHMARKS)]


def get_benchmark(name: str) -> Benchmark:
    """``NAME-vN`` exactly, or a bare ``NAME`` for its latest version."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    versions = [b for b in BENCHMARKS.values() if b.name == name]
    if versions:
        return max(versions, key=lambda b: b.version)
    known = sorted(BENCHMARKS) + sorted({b.name for b in BENCHMARKS.values()})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown benchmark {name!r}{hint}; known: {', '.join(sorted(BENCHMARKS))}")


def adhoc_benchmark(data: str, base: str = "imagenette64-v1") -> Benchmark:
    """``base``'s protocol on another dataset spec (``bench run --data imagefolder:PATH``). Its id is
    ``custom-<dataset>-v1``: such results never mix with the named benchmark's."""
    import re
    from pathlib import Path
    slug = re.sub(r"[^a-z0-9]+", "-", Path(data.split(":", 1)[-1]).name.lower()).strip("-")[:40] or "data"
    b = get_benchmark(base)
    return b.model_copy(update={"name": f"custom-{slug}", "version": 1, "data": data, "superseded_by": None,
                                "description": f"{b.id} protocol on {data}"})
