"""Do the label-free estimators predict linear top-1? The figures of docs/experiments/estimators.md.

1. Every committed imagenette64-v1 row: the one label-free number its records carry, the training-time RankMe
   monitor (``monitors.effective_rank``: the last 2048 training-view features of the final epoch), against the
   row's linear_top1. Trained encoders are not in the checkout (records point to run folders elsewhere), so
   the new estimators cannot be computed for them.
2. The committed imagenette64-v1 rows with all three estimators (needs the imagenette64 data): the rows trained
   since the estimators exist carry them in their records; the random-init rows' encoders are rebuilt from each
   record's config and seed (``bench.runner.build_method``), and RankMe, alpha-ReQ and LiDAR
   (``probes.estimators``) computed on imagenette64's train features, against the committed linear_top1.
3. Any other results folder (``--results``, e.g. tiny imagenette-mini-v1 runs): its records' own estimators.

Kendall tau-b over rows, as the leaderboard's section computes it (``bench.rank_agreement``).

    PYTHONPATH=. python scripts/estimator_figures.py [--results /tmp/est/results] [--cache-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cells import fmt_tau  # noqa: E402
from bench.leaderboard import build_leaderboard, leaderboard_from_results  # noqa: E402
from bench.rank_agreement import estimator_agreement  # noqa: E402


def rows_table(df: pd.DataFrame, records: list, headline: str, names: list[str]) -> list[str]:
    by_id = {r.run_id: r for r in records}
    lines = ["| row | n | " + headline + " | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names))]
    for _, row in df.iterrows():
        runs = [by_id[i] for i in row["run_ids"].split() if i in by_id]
        cells = []
        for name in names:
            vals = [r.estimators[name] for r in runs if name in r.estimators]
            cells.append(f"{sum(vals) / len(vals):.2f}" if vals else "–")
        if any(c != "–" for c in cells):
            label = f"{row['label']} ({row['backbone']}, {row['config']})"
            lines.append(f"| {label} | {row['n']} | {row[f'{headline}_mean']:.2f} | " + " | ".join(cells) + " |")
    return lines


def section(title: str, df: pd.DataFrame, records: list, headline: str = "linear_top1") -> list[str]:
    taus = estimator_agreement(df, records, headline)
    names = [t["estimator"] for t in taus]
    lines = [f"### {title}", "", *rows_table(df, records, headline, names), "",
             *(f"- {t['estimator']} vs {headline}: {fmt_tau(t)}" for t in taus)]
    # RankMe and LiDAR are bounded by the feature width (512 for resnet18, 192 for vit_tiny): within one backbone
    # the comparison is like for like
    backbones = df["backbone"].value_counts()
    if len(backbones) > 1:
        for backbone, count in backbones.items():
            if count >= 3:
                sub = estimator_agreement(df[df["backbone"] == backbone], records, headline)
                lines += [f"- {backbone} rows only: " + "; ".join(f"{t['estimator']} {fmt_tau(t)}" for t in sub)]
    return [*lines, ""]


def committed_monitor_rows(results: Path) -> list[str]:
    df, records, _ = leaderboard_from_results("imagenette64-v1", results)
    recs = [r.model_copy(update={"estimators": {"rankme_train_monitor": r.monitors["effective_rank"]}})
            if "effective_rank" in r.monitors else r for r in records]
    return section("imagenette64-v1, committed rows: training-time RankMe monitor", df, recs)


def random_rows(results: Path, cache_dir: str | None) -> list[str]:
    import torch

    from bench.benchmarks import get_benchmark
    from bench.config import TrainConfig
    from bench.records import load_errata
    from bench.runner import build_method, load_benchmark_data
    from probes.estimators import estimate
    from probes.features import extract_features

    bench = get_benchmark("imagenette64-v1")
    df, records, _ = leaderboard_from_results(bench, results)
    data = load_benchmark_data(bench, cache_dir=cache_dir)
    # one run (the lowest seed) per random-init row: rebuilding and extracting imagenette64 costs minutes on a CPU
    firsts: dict[str, object] = {}
    for r in sorted((r for r in records if r.method == "random"), key=lambda r: r.seed):
        firsts.setdefault(str(sorted((k, str(v)) for k, v in r.config.items() if k != "seed")), r)
    done = []
    for r in firsts.values():
        encoder = build_method(TrainConfig(**r.config)).encoder
        with torch.no_grad():
            feats = extract_features(encoder, data.train.images, img_size=bench.img_size, crop_pct=bench.crop_pct,
                                     cache_dir=cache_dir, data_key=f"{data.train.split}:{data.train.fingerprint}")
        values, setup = estimate(encoder, data.train.images, feats, img_size=bench.img_size, crop_pct=bench.crop_pct,
                                 seed=bench.split_seed, split=data.train.split)
        print(f"{r.run_id}: {values}", file=sys.stderr)
        done.append(r.model_copy(update={"estimators": values, "estimators_setup": setup}))
    # the rows' linear_top1 means stay those of all their committed seeds; the estimators are the first seed's.
    # Rows trained since the estimators exist carry them in their own records: they join the same table.
    with_est = {r.run_id: r for r in done}
    recs = [with_est.get(r.run_id, r) for r in records if r.method == "random" or r.estimators]
    rdf = build_leaderboard(recs, bench.id, errata=load_errata(results))
    return section("imagenette64-v1, committed rows with the estimators: trained rows whose records carry them, and "
                   "the random-init rows (the first seed's encoder rebuilt from its config)", rdf, recs) + \
        [f"Setup: {setup}", ""]


def results_rows(results: Path) -> list[str]:
    from bench.records import load_records
    out = []
    for bid in sorted({r.benchmark.id for r in load_records(results)}):
        df, records, _ = leaderboard_from_results(bid, results)
        out += section(f"{bid}, records in {results}", df, records)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--committed", default=str(ROOT / "results"), help="the committed results folder")
    p.add_argument("--results", default=None, help="another results folder whose records carry estimators")
    p.add_argument("--cache-dir", default=None, help="data / feature cache")
    p.add_argument("--skip-random", action="store_true", help="do not rebuild the random-init encoders")
    p.add_argument("--out", default=None, help="write the markdown here too")
    args = p.parse_args(argv)
    lines = committed_monitor_rows(Path(args.committed))
    if not args.skip_random:
        lines += random_rows(Path(args.committed), args.cache_dir)
    if args.results:
        lines += results_rows(Path(args.results))
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
