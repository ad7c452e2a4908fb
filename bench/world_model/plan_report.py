"""The planning leaderboard: every record of one planning benchmark, seeds aggregated per (encoder, planner)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bench.cells import fmt_pm
from bench.errors import BenchError
from bench.world_model.planning import PLANNERS, PlanResult

#: leaderboard columns after encoder / planner / n: (header, value of one planner's result, digits)
COLUMNS = (("success %", lambda m: m.success_rate, 1),
           ("mean final dist (px)", lambda m: m.mean_final_distance, 2),
           ("median final dist (px)", lambda m: m.median_final_distance, 2),
           ("world-model held-out L1 / copy", lambda m: _l1_ratio(m), 2))


def _l1_ratio(m) -> float | None:
    """Teacher-forced held-out L1 as a fraction of the copy baseline "nothing moves" (pixels and embeddings on one
    scale); None for planners without a world model."""
    if not m.world_model:
        return None
    after = m.world_model["val_after"]
    return after["teacher_forcing"] / max(after["copy_baseline"], 1e-12)


def load_plan_records(results_dir, bench_id: str) -> list[PlanResult]:
    """Every record under ``<results_dir>/<bench_id>/``. A record claiming another benchmark, or whose recorded
    spec_hash is not what its own settings hash to, is refused (BenchError)."""
    records = []
    for path in sorted((Path(results_dir) / bench_id).glob("*.json")):
        r = PlanResult(**json.loads(path.read_text()))
        if r.benchmark != bench_id:
            raise BenchError(f"record {path} is of {r.benchmark}, not {bench_id}; move it out of the results folder")
        if r.spec_hash is not None and r.spec_hash != r.spec.spec_hash():
            raise BenchError(f"record {path}: spec_hash {r.spec_hash} does not match its settings "
                             f"({r.spec.spec_hash()}); the record was edited")
        records.append(r)
    return records


def plan_markdown(records: list[PlanResult], bench_id: str) -> str:
    """One row per (encoder, planner): cells mean ± std over its seeds (std ddof=1; none for one seed), n = seeds
    (a seed planned twice counts once, its latest record).
    Records of one benchmark id made with different specs are refused (a changed protocol is a new id)."""
    if not records:
        raise BenchError(f"no records of {bench_id}; run `bench plan` first")
    hashes = sorted({r.spec.spec_hash() for r in records})
    if len(hashes) > 1:
        raise BenchError(f"records of {bench_id} were made with different specs (spec_hash {', '.join(hashes)}); "
                         f"they cannot share a leaderboard")
    latest: dict[tuple, tuple[str, object]] = {}  # a seed run again counts once: its latest result
    for r in records:
        for m in r.methods:
            planner = m.method + (f" ({m.world_model['encoder']})" if m.world_model else "")
            key = (r.encoder, m.method, planner, r.seed)
            if key not in latest or (r.created_at, r.run_id) > latest[key][0]:
                latest[key] = ((r.created_at, r.run_id), m)
    groups: dict[tuple[str, str, str], list[tuple[int, object]]] = {}
    for (encoder, method, planner, seed), (_, m) in latest.items():
        groups.setdefault((encoder, method, planner), []).append((seed, m))
    spec = records[0].spec
    head = ["encoder", "planner", "n", *(h for h, _, _ in COLUMNS), "seeds"]
    lines = [f"# {bench_id}", "",
             f"spec_hash `{hashes[0]}`. {spec.episodes} tasks (seeds 0-{spec.episodes - 1}), success: ending within "
             f"{spec.plan.tolerance:g} px of the goal after {spec.plan.steps} steps. Cells: mean ± std over n seeds "
             f"(`bench plan --seed`: the planners' sampling and a random encoder's init). World-model held-out L1 / "
             f"copy: teacher-forced L1 on held-out episodes as a fraction of predicting that nothing moves. "
             f"Generated from results/{bench_id}/ by `bench plan`.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {p: i for i, p in enumerate(PLANNERS)}
    for (encoder, _, planner), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2])):
        cells = []
        for _, value, digits in COLUMNS:
            vals = [v for v in (value(m) for _, m in runs) if v is not None]
            cells.append(fmt_pm(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan,
                                digits=digits) if vals else "–")
        seeds = " ".join(str(s) for s, _ in sorted(runs, key=lambda sm: sm[0]))
        lines.append("| " + " | ".join([encoder, planner, str(len(runs)), *cells, seeds]) + " |")
    return "\n".join(lines) + "\n"


def write_plan_leaderboard(results_dir, leaderboards_dir, bench_id: str) -> Path:
    """``<leaderboards_dir>/<bench_id>/leaderboard.md`` from every record under ``<results_dir>/<bench_id>``."""
    from bench.io import atomic_write_text
    text = plan_markdown(load_plan_records(results_dir, bench_id), bench_id)
    return atomic_write_text(Path(leaderboards_dir) / bench_id / "leaderboard.md", text)
