"""Run configuration: a recipe YAML (``recipes/<name>.yaml``) plus command-line overrides,
validated by pydantic so a typo is an error with a "did you mean", not a silently ignored key."""

from __future__ import annotations

import math
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_serializer, model_validator

from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.benchmarks import Benchmark

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


class TrainConfig(BaseModel):
    """Everything that determines a training run (the record stores it in full, with its hash)."""

    model_config = ConfigDict(extra="forbid")

    method: str
    method_kwargs: dict[str, Any] = {}
    backbone: str = "resnet18"
    backbone_kwargs: dict[str, Any] = {}
    img_size: int = 32
    epochs: int = 10
    batch_size: int = 256
    optimizer: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = 0.3                 # base lr for a batch of 256; scaled linearly with batch_size
    weight_decay: float = 1e-6
    weight_decay_end: float | None = None  # set: weight decay by a cosine from weight_decay to this (DINO: 0.04 -> 0.4)
    momentum: float = 0.9           # sgd / lars
    lars_eta: float = 0.001         # LARS trust coefficient (SimCLR paper; solo-learn uses 0.02 with clipping)
    lars_clip: bool = False         # clip the LARS local lr at the global lr (solo-learn clip_lr)
    warmup_epochs: float = 1.0      # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    channels_last: bool = True
    online_probe: bool = True
    stop_on_collapse: bool = False
    # execution (Lightning's own multi-device machinery; batch_size stays the global batch, split over the devices)
    devices: int = 1                # processes (GPUs) per node
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    sync_batchnorm: bool = True     # with > 1 process: BatchNorm statistics over the global batch (SimCLR, Barlow Twins)
    compile: bool = False           # torch.compile the backbone

    @field_validator("batch_size", "img_size")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be > 0")
        return v

    @field_validator("epochs")
    @classmethod
    def _non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("lr", "weight_decay", "weight_decay_end", "momentum", "lars_eta", "warmup_epochs", "min_lr_ratio",
                     "grad_clip")
    @classmethod
    def _finite_non_negative(cls, v: float | None, info) -> float | None:
        if v is None:
            return v
        if not math.isfinite(v) or v < 0 or (info.field_name in ("lr", "grad_clip") and v == 0):
            raise ValueError("must be a finite number " + (">= 0" if info.field_name not in ("lr", "grad_clip")
                                                           else "> 0"))
        return v

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, v: int) -> int:
        if not 0 <= v < 2**32:
            raise ValueError("must be in 0 .. 2**32 - 1")
        return v

    @field_validator("devices", "num_nodes")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @model_validator(mode="after")
    def _batch_splits_over_processes(self) -> "TrainConfig":
        if self.batch_size % self.world_size:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by devices x num_nodes = "
                             f"{self.world_size} (each process takes an equal share of every global batch)")
        return self

    @model_serializer(mode="wrap")
    def _omit_keys_at_default(self, handler):
        # keys added later (execution, weight_decay_end) are left out of the dump at their defaults, so the
        # configs (and config hashes) of earlier runs are what they were before these keys existed
        data = handler(self)
        for key, default in _OMITTED_AT_DEFAULT.items():
            if isinstance(data, dict) and data.get(key, default) == default:
                data.pop(key, None)
        return data

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 256


# keys left out of the dump at their defaults, so configs made before they existed keep their hash
_OMITTED_AT_DEFAULT = {"devices": 1, "num_nodes": 1, "strategy": "auto", "sync_batchnorm": True, "compile": False,
                       "weight_decay_end": None}


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_label(name_or_path: str | None) -> str | None:
    """The name a recipe is recorded under: ``recipes/dino.yaml`` (any path to a shipped recipe) -> ``dino``, so
    runs started with ``--recipe dino`` and ``--recipe recipes/dino.yaml`` share a leaderboard row; other paths
    are kept as given."""
    if not name_or_path:
        return name_or_path
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.parent.name == RECIPE_DIR.name and path.stem in available_recipes():
        return path.stem
    return str(name_or_path)


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A recipe by name (``recipes/<name>.yaml``) or by path; returns the raw mapping."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        hint = get_close_matches(str(name_or_path), available_recipes(), n=1)
        raise ConfigError(f"recipe {name_or_path!r} not found" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; known: {', '.join(available_recipes())}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of config keys, got {type(data).__name__}")
    return data


def recipe_named_like(method: str | None) -> str | None:
    """The shipped recipe named like a method (``barlow-twins`` -> ``barlow_twins``), or None."""
    guess = method.replace("-", "_") if method else None
    return guess if guess in available_recipes() else None


#: the keys the effective-config line shows (``ResolvedConfig.summary``), as it labels them
_SUMMARY_KEYS = {"method": "method", "backbone": "backbone", "img_size": "img_size", "epochs": "epochs",
                 "batch_size": "batch", "optimizer": "optimizer", "lr": "lr", "seed": "seed"}


@dataclass(frozen=True)
class ResolvedConfig:
    """A config and where its values came from: ``sources`` maps each key a layer set to that layer's name
    (``recipe simclr``, ``imagenette64-v1 budget``, ``options``; unset keys are TrainConfig defaults);
    ``dropped`` holds the backbone_kwargs an earlier layer gave for a backbone a later layer replaced, which the
    new backbone does not take (``dropped_family``: the replaced backbone's family)."""

    config: TrainConfig
    recipe: str | None
    sources: dict[str, str]
    dropped: dict[str, Any]
    dropped_family: str | None = None

    def summary(self) -> str:
        """One line: the values that shape a run and the layer each came from."""
        cfg, cells = self.config, []
        for key, label in _SUMMARY_KEYS.items():
            value = getattr(cfg, key)
            if key == "backbone" and cfg.backbone_kwargs:
                value = f"{value}({', '.join(f'{k}={v}' for k, v in cfg.backbone_kwargs.items())})"
            cells.append(f"{label}={value} [{self.sources.get(key, 'default')}]")
        return "config: " + " ".join(cells)

    def notes(self) -> list[str]:
        if not self.dropped:
            return []
        kwargs = ", ".join(f"{k}={v}" for k, v in self.dropped.items())
        what = f" ({self.dropped_family} option{'s' if len(self.dropped) > 1 else ''})" if self.dropped_family else ""
        return [f"note: dropped backbone_kwargs {kwargs}{what} for {self.config.backbone}"]


def resolve_config(recipe: str | None = None, *layers: tuple[str, dict[str, Any]]) -> ResolvedConfig:
    """The recipe's values, then each ``(name, values)`` layer in turn (values that are None are skipped;
    ``method_kwargs`` / ``backbone_kwargs`` are merged key by key). A layer that replaces the backbone drops the
    backbone_kwargs gathered so far that the new backbone does not take (a resnet ``stem`` under a ViT) and
    says so in ``dropped``. Unknown keys -> ConfigError with a hint."""
    label = recipe_label(recipe)
    data: dict[str, Any] = load_recipe(recipe) if recipe else {}
    sources = dict.fromkeys(data, f"recipe {label}")
    dropped: dict[str, Any] = {}
    family = None
    for name, values in layers:
        values = {k: v for k, v in values.items() if v is not None}
        old, new = data.get("backbone", TrainConfig.model_fields["backbone"].default), values.get("backbone")
        if new and new != old and isinstance(data.get("backbone_kwargs"), dict):
            from bench.backbones import backbone_family, backbone_options  # torch + timm: only when needed
            options = backbone_options(new)
            gone = {k: v for k, v in data["backbone_kwargs"].items() if options is not None and k not in options}
            if gone:
                dropped.update(gone)
                family = backbone_family(old)
                data["backbone_kwargs"] = {k: v for k, v in data["backbone_kwargs"].items() if k not in gone}
        for key, value in values.items():
            merge = key in ("method_kwargs", "backbone_kwargs") and isinstance(value, dict) \
                and isinstance(data.get(key, {}), dict)  # anything else: pydantic names the bad value
            data[key] = {**data.get(key, {}), **value} if merge else value
            sources[key] = name
    unknown = [k for k in data if k not in TrainConfig.model_fields]
    if unknown:
        k = unknown[0]
        hint = get_close_matches(k, list(TrainConfig.model_fields), n=1)
        raise ConfigError(f"unknown config key {k!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + (f" in {sources[k]}" if sources[k].startswith("recipe ") else ""))
    try:
        config = TrainConfig(**data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        if not where:  # a check across keys (model validator)
            raise ConfigError(f"bad config: {err['msg'].removeprefix('Value error, ')}") from None
        raise ConfigError(f"bad config value for {where!r}: {err['msg'].removeprefix('Value error, ')} "
                          f"(got {err.get('input')!r})") from None
    return ResolvedConfig(config, recipe, sources, dropped, family)


def make_config(recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Recipe values, then overrides that are not None (see :func:`resolve_config`)."""
    return resolve_config(recipe, ("options", overrides)).config


def budget_config(benchmark: Benchmark, method: str, recipe: str | None = None, **overrides: Any) -> ResolvedConfig:
    """``bench submit``'s rule: the method's recipe (optimiser, lr, method_kwargs), then the benchmark's training
    budget (backbone, crop, epochs, batch), then ``overrides``; the method is always ``method``."""
    return resolve_config(recipe, (f"{benchmark.id} budget", benchmark.budget),
                          ("options", {**overrides, "method": method}))


def run_config(benchmark: Benchmark, method: str | None = None, recipe: str | None = None,
               **overrides: Any) -> ResolvedConfig:
    """``bench run`` / ``bench train``: the recipe given, else the one named like the method, then ``overrides``.
    A method without a recipe (a plugin), or with a recipe that names no backbone (a plugin's recipe of optimiser
    and hyper-parameters, like ``examples/vicreg.yaml``), trains with the benchmark's budget, as ``bench submit``
    does (:func:`budget_config`)."""
    recipe = recipe or recipe_named_like(method)
    if recipe is None and not method:
        raise ConfigError("give --method (see `bench methods`) or --recipe (see recipes/)")
    if recipe is None or "backbone" not in load_recipe(recipe):
        return budget_config(benchmark, method, recipe, **overrides)
    return resolve_config(recipe, ("options", {**overrides, "method": method}))
