"""Score one frozen encoder on every benchmark of a suite (:mod:`bench.benchmarks.suites`): one ordinary run
record per dataset, written as each dataset finishes, so a killed suite continues where it stopped.

- ``evaluate_suite(encoder_or_spec, suite)``: an external encoder (``bench eval --model ... --suite``); a
  benchmark that already holds an ``ok`` record of the same encoder (label and config hash: spec, weights sha256,
  preprocessing) and protocol (spec hash) is skipped.
- ``probe_suite(run_dir, suite)``: a run folder of ``bench train`` (``bench probe RUN --suite``, ``bench run
  --suite``); a benchmark that already holds the run's ``ok`` record is skipped.

Every dataset is looked for before any is scored: a missing one is an error naming it, unless ``allow_missing``
(then it is skipped and listed in :attr:`SuiteRun.missing`; the suite leaderboard gives no aggregate to an encoder
without every dataset). Features are cached under the cache dir, so a dataset interrupted halfway does not extract
again what it had."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.benchmarks import Benchmark
from bench.benchmarks.suites import Suite, get_suite
from bench.errors import DataError
from bench.records import RunRecord, config_hash, load_records

__all__ = ["SuiteRun", "evaluate_suite", "probe_suite", "run_suite"]


@dataclass
class SuiteRun:
    """What a suite run did: ``records`` (benchmark id -> record, new or found), ``reused`` (ids skipped because
    their record existed) and ``missing`` (id -> why its data is absent; only with ``allow_missing``)."""

    suite: Suite
    records: dict[str, RunRecord] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.missing and len(self.records) == len(self.suite.benchmarks)


def check_present(benchmark: Benchmark, datasets_root: str | Path | None = None) -> None:
    """Raise the DataError that loading would for a ``tv:`` dataset whose folder or files are missing (nothing is
    read or decoded); other specs are found when loaded."""
    if benchmark.data.startswith("tv:"):
        from bench.data.torchvision_sets import check_tv_present
        check_tv_present(benchmark.data, datasets_root)


def run_suite(suite: Suite | str, score: Callable[[Benchmark, object], RunRecord],
              existing: Callable[[Benchmark], RunRecord | None], *, allow_missing: bool = False,
              data_root: str | None = None, cache_dir: str | None = None, imagenet_root: str | None = None,
              datasets_root: str | None = None, log: Callable[[str], None] | None = print) -> SuiteRun:
    """The loop every suite command runs: skip what ``existing`` finds, check the data of the rest, then per
    benchmark load its data and ``score(benchmark, data)`` (which writes the record)."""
    from bench.runner import load_benchmark_data
    log = log or (lambda msg: None)
    suite = get_suite(suite) if isinstance(suite, str) else suite
    out, todo = SuiteRun(suite), []
    for bench in suite.specs():
        found = existing(bench)
        if found is not None:
            out.records[bench.id] = found
            out.reused.append(bench.id)
            log(f"{bench.id}: already recorded ({found.run_id}), skipped")
        else:
            todo.append(bench)
    for bench in todo:
        try:
            check_present(bench, datasets_root)
        except DataError as e:
            out.missing[bench.id] = str(e)
    if out.missing and not allow_missing:
        ids = list(out.missing)
        raise DataError(f"suite {suite.id} lacks {len(ids)} of its {len(suite.benchmarks)} datasets "
                        f"({', '.join(ids)}): {out.missing[ids[0]]}; or pass --allow-missing to score the others "
                        f"(a partial suite gets no aggregate)")
    for bench in todo:
        if bench.id in out.missing:
            log(f"{bench.id}: data missing, skipped (--allow-missing)")
            continue
        log(f"{bench.id}: {bench.data} ...")
        data = load_benchmark_data(bench, data_root, cache_dir, imagenet_root, datasets_root)
        out.records[bench.id] = score(bench, data)
    return out


def _cache(cache_dir: str | None) -> str:
    """Suites always cache features (a killed suite reuses them): the cache dir, else the default one."""
    from bench.data import default_cache_dir
    return str(cache_dir or default_cache_dir())


def _recorded(results_dir: str | Path, bench: Benchmark, match: Callable[[RunRecord], bool]) -> RunRecord | None:
    """The first record under ``results_dir`` of ``bench`` as it is now (its spec hash) that ``match`` accepts."""
    return next((r for r in load_records(results_dir, bench.id)
                 if r.benchmark.spec_hash == bench.spec_hash() and match(r)), None)


def evaluate_suite(encoder_or_spec, suite: Suite | str, *, weights: str | Path | None = None,
                   results_dir: str | Path = "results", name: str | None = None, allow_missing: bool = False,
                   data_root: str | None = None, cache_dir: str | None = None, imagenet_root: str | None = None,
                   datasets_root: str | None = None, log: Callable[[str], None] | None = print,
                   **load_kw) -> SuiteRun:
    """An external encoder (model spec or ``nn.Module``, as :func:`bench.evaluate`) on every benchmark of
    ``suite``; one record per benchmark under ``results_dir``."""
    from bench.scoring import encoder_label, evaluate, external_config, resolve_encoder
    cache_dir, log = _cache(cache_dir), log or (lambda msg: None)
    loaded: dict[int, tuple] = {}  # img_size -> (encoder, info): a spec is loaded once per resolution

    def encoder_for(bench: Benchmark):
        if bench.img_size not in loaded:
            loaded[bench.img_size] = resolve_encoder(encoder_or_spec, bench, weights, **load_kw)
        return loaded[bench.img_size]

    label = encoder_label(encoder_or_spec, name)

    def existing(bench: Benchmark) -> RunRecord | None:
        want = config_hash(external_config(encoder_for(bench)[1]))
        return _recorded(results_dir, bench, lambda r: r.status == "ok" and r.origin == "external"
                         and r.method == label and r.config_hash == want)

    def score(bench: Benchmark, data) -> RunRecord:
        rec = evaluate(encoder_for(bench)[0], bench, results_dir=results_dir, name=label, data=data,
                       cache_dir=cache_dir)
        log(f"{bench.id}: " + "  ".join(f"{k}={v:.1f}" for k, v in rec.scores.items() if k.endswith("_top1"))
            + f"  -> {rec.run_id}")
        return rec

    return run_suite(suite, score, existing, allow_missing=allow_missing, data_root=data_root, cache_dir=cache_dir,
                     imagenet_root=imagenet_root, datasets_root=datasets_root, log=log)


def probe_suite(run_dir: str | Path, suite: Suite | str, *, results_dir: str | Path = "results",
                allow_missing: bool = False, data_root: str | None = None, cache_dir: str | None = None,
                imagenet_root: str | None = None, datasets_root: str | None = None,
                log: Callable[[str], None] | None = print) -> SuiteRun:
    """A trained run folder's frozen encoder on every benchmark of ``suite`` (records keep the run's id)."""
    from bench.runner import probe_run, run_info
    run_id = run_info(run_dir)["run_id"]  # a bad folder: the probing message, not resume's
    cache_dir = _cache(cache_dir)

    def existing(bench: Benchmark) -> RunRecord | None:
        return _recorded(results_dir, bench, lambda r: r.run_id == run_id and r.status != "failed")

    def score(bench: Benchmark, data) -> RunRecord:
        return probe_run(run_dir, bench, results_dir=results_dir, data=data, cache_dir=cache_dir, log=log)

    return run_suite(suite, score, existing, allow_missing=allow_missing, data_root=data_root, cache_dir=cache_dir,
                     imagenet_root=imagenet_root, datasets_root=datasets_root, log=log)
