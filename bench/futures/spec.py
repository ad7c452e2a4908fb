"""The futures-v1 protocol as data: clip counts and sizes, predictor size and training budget, hashed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_validator

from bench.errors import ConfigError
from bench.versioned_spec import NON_PROTOCOL as _NON_PROTOCOL, VersionedSpec


class FuturesSpec(VersionedSpec):
    """One futures benchmark version. Both predictors get the same past, width, steps, batches and seed."""

    name: str = "futures"
    version: int = 1
    description: str = ("turning moving-shapes clips (4 past + 4 future frames, 32 px): a pixel MSE predictor vs a "
                        "JEPA predictor of the frozen encoder's future embedding, same past, budget and seed")
    size: int = Field(32, ge=16)          # frame side, px
    past: int = Field(4, ge=2)            # frames before and including the turn
    future: int = Field(4, ge=1)          # frames after it
    n_train: int = Field(256, ge=2)       # training clips (seed train_seed), only the future that happened
    n_test: int = Field(96, ge=2)         # scored clips (seed test_seed), every branch rendered
    train_seed: int = 0
    test_seed: int = 1
    other_clips: int = Field(4, ge=0)     # impossible candidates taken from other test clips' futures
    pixel_size: int = Field(16, ge=4)     # the pixel predictor's frames are area-downsampled to this side
    grid: int = Field(2, ge=1)            # encoder tokens pooled onto grid x grid cells per tubelet slot
    hidden: int = Field(256, ge=8)        # width of both predictors' two hidden layers
    steps: int = Field(200, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    jepa_loss: Literal["l1", "mse"] = "l1"  # V-JEPA's L1 on the embedding; the pixel predictor's loss is MSE

    @model_validator(mode="after")
    def _check(self) -> "FuturesSpec":
        if self.size % self.pixel_size:
            raise ValueError(f"pixel_size {self.pixel_size} does not divide size {self.size}")
        if self.other_clips >= self.n_test:
            raise ValueError(f"other_clips {self.other_clips} needs more than that many test clips (n_test)")
        return self


FUTURES_V1 = FuturesSpec()


def futures_spec(overrides: dict | None = None) -> FuturesSpec:
    """futures-v1, or with ``--set KEY=V`` overrides a ``custom-futures-<hash8>-v1`` (never futures-v1's records);
    an unknown key or a bad value is one ConfigError line."""
    if not overrides:
        return FUTURES_V1
    bad = sorted(set(overrides) & _NON_PROTOCOL)
    if bad:
        raise ConfigError(f"--set {bad[0]}: not a setting (known: {', '.join(_settings())})")
    try:
        spec = FuturesSpec(**overrides)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        msg = f"unknown key (known: {', '.join(_settings())})" if err["type"] == "extra_forbidden" \
            else err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--set {key}: {msg}" if key else f"bad --set: {msg}") from None
    return spec.variant_of(FUTURES_V1, overrides)


def _settings() -> list[str]:
    return [k for k in FuturesSpec.model_fields if k not in _NON_PROTOCOL]
