"""Suites: frozen, versioned lists of benchmarks whose records aggregate into one table (``bench leaderboard
SUITE-vN``, :mod:`bench.suite_leaderboard`). Like a benchmark, a suite is data: changing its list or its scores is a
new version. ``scores`` are the record scores the aggregate reports per dataset, as mean and average rank (each
benchmark of a suite must list the probes behind them; a few-shot probe joins as a new version's score)."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict

from bench.benchmarks import BENCHMARKS, Benchmark, get_benchmark, latest_version
from bench.errors import ConfigError

__all__ = ["SUITES", "Suite", "available_suites", "get_suite", "is_suite"]


class Suite(BaseModel):
    """One suite version: its benchmarks (ids ``NAME-vN``) and the scores it aggregates (headline first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    description: str
    benchmarks: tuple[str, ...]
    scores: tuple[str, ...] = ("linear_top1", "knn_top1")

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    @property
    def headline(self) -> str:
        return self.scores[0]

    def specs(self) -> list[Benchmark]:
        """The benchmarks, in the suite's order."""
        return [get_benchmark(b) for b in self.benchmarks]


_ALL = ("cifar10-v1", "cifar100-v1", "stl10-v1", "flowers102-v1", "pets-v1", "dtd-v1", "food101-v1", "aircraft-v1",
        "cars-v1", "caltech101-v1", "eurosat-v1", "sun397-v1")

_DEFINED = [
    Suite(name="transfer", version=1, benchmarks=_ALL,
          description="The 12 standard transfer datasets (Kornblith et al. 2019 / Ericsson et al. 2021) at 224 px, "
                      "k-NN and linear probes on frozen features; aggregate: mean top-1 and average rank."),
    Suite(name="transfer-small", version=1,
          benchmarks=("flowers102-v1", "pets-v1", "dtd-v1", "aircraft-v1", "caltech101-v1", "eurosat-v1"),
          description="The six transfer datasets of at most 27k images each (flowers, pets, textures, aircraft, "
                      "objects, satellite), the benchmarks of transfer-v1; minutes per encoder on one GPU."),
]

#: suite id (NAME-vN) -> spec
SUITES: dict[str, Suite] = {s.id: s for s in _DEFINED}


def is_suite(name: str) -> bool:
    return latest_version(SUITES, name) is not None


def available_suites() -> list[Suite]:
    return [SUITES[k] for k in sorted(SUITES)]


def get_suite(name: str) -> Suite:
    """``NAME-vN`` exactly, or a bare ``NAME`` for its latest version."""
    found = latest_version(SUITES, name)
    if found is not None:
        return found
    close = difflib.get_close_matches(name, list(SUITES) + list(BENCHMARKS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown suite {name!r}{hint}; known: {', '.join(sorted(SUITES))}")
