"""Leaderboards: one benchmark version's records -> mean ± std (95% CI) over seeds per (method, backbone, setup).

Only records of exactly one benchmark id are ever aggregated (versions are never mixed); failed runs
are left out, collapsed runs stay in and are marked. Seeds of one setup are grouped by recipe and by
the hash of the config without its seed, so runs with different hyper-parameters are never averaged.

For a score with values x_1..x_n over seeds: mean = sum(x_i)/n, std = sqrt(sum((x_i - mean)^2)/(n-1))
(ddof=1) and the 95% confidence interval is mean ± h with the Student-t half-width
h = t_{0.975, n-1} * std / sqrt(n) (std and h are NaN, shown as "–", for n = 1)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from bench.cells import (fmt_ci, fmt_count, fmt_duration, fmt_params, fmt_pm, fmt_tau, headline_of, score_keys,
                         tex_document, tex_escape)
from bench.config import recipe_label
from bench.errors import BenchError, ConfigError
from bench.io import atomic_write_many
from bench.rank_agreement import estimator_agreement
from bench.records import Erratum, RunRecord, check_benchmark_id, load_errata, load_records, setup_hash

__all__ = ["FORMATS", "build_leaderboard", "ci95_halfwidth", "csv_safe", "dedupe_records", "leaderboard_from_results",
           "md_cell", "method_label", "render_leaderboard", "save_leaderboard", "t_quantile_975", "write_leaderboard"]

FORMATS = ("md", "csv", "tex", "html")
_KEYS = ["method", "backbone", "recipe", "config", "data"]

#: t_{0.975, df} for df = 1..30 (two-sided 95%); beyond 30 the normal quantile 1.96 is used
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (1.96 for df > 30); NaN for df < 1."""
    if df < 1:
        return math.nan
    return _T975[df - 1] if df <= len(_T975) else 1.96


def ci95_halfwidth(std: float, n: int) -> float:
    """h = t_{0.975, n-1} * std / sqrt(n): the 95% CI of the mean is [mean - h, mean + h]; NaN for n < 2."""
    if n < 2 or pd.isna(std):
        return math.nan
    return t_quantile_975(n - 1) * std / math.sqrt(n)


def _hardware(hw: dict) -> str:
    """``4x NVIDIA H100`` / ``NVIDIA H100`` when a GPU was used, else ``AMD EPYC, 2 cores``; "" when unknown."""
    if hw.get("gpu"):
        count = hw.get("gpu_count") or 1
        return f"{count}x {hw['gpu']}" if count > 1 else str(hw["gpu"])
    if hw.get("cpu"):
        cpu = f"{hw['cpu']} ({hw['cpu_isa']})" if hw.get("cpu_isa") else str(hw["cpu"])
        return f"{cpu}, {hw['cpu_count']} cores" if hw.get("cpu_count") else cpu
    return ""


#: per method, the config terms that add another paper's objective to it (weight > 0): a row's label names them,
#: so a row says what trained it (DINO with iBOT's masked-patch term and KoLeo is not plain DINO)
ADDED_TERMS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "dino": ((("patch_loss_weight",), "iBOT"), (("koleo_weight",), "KoLeo")),
    "ibot": ((("koleo_weight",), "KoLeo"),),
    "ijepa": ((("var_weight", "cov_weight"), "C-JEPA var/cov"),),
    "vjepa": ((("var_weight", "cov_weight"), "C-JEPA var/cov"),),
}


def method_label(method: str, config: dict) -> str:
    """The method's name plus the objectives its config adds: ``dino + iBOT + KoLeo``, ``vjepa + C-JEPA var/cov``."""
    kwargs = config.get("method_kwargs") or {}
    added = [name for keys, name in ADDED_TERMS.get(method, ())
             if any(isinstance(kwargs.get(k), (int, float)) and kwargs[k] > 0 for k in keys)]
    return " + ".join([method, *added])


def build_leaderboard(records: list[RunRecord], benchmark_id: str, headline: str = "linear_top1",
                      errata: dict[str, Erratum] | None = None) -> pd.DataFrame:
    """One row per setup: ``rank, method, label, backbone, recipe, config, n, status, <score>_mean, <score>_std,
    <score>_ci95, ..., params, images_seen, wall_time_s, hardware, run_ids``; sorted by the headline mean
    (descending). std uses ddof=1; ci95 is the Student-t half-width (both NaN for n=1). ``df.attrs["headline"]``
    names the headline score; ``run_ids`` is space-separated; ``label`` is :func:`method_label`.
    ``df.attrs["estimator_tau"]``: each label-free estimator's Kendall tau with the headline over the rows
    (:func:`bench.rank_agreement.estimator_agreement`).
    Runs with an ``exclude`` erratum are left out; ``df.attrs["errata"]`` lists one line per erratum that touches
    the benchmark's records."""
    errata = errata or {}
    touched = {r.run_id: errata[r.run_id] for r in records if r.benchmark.id == benchmark_id and r.run_id in errata}
    recs = [r for r in records if r.benchmark.id == benchmark_id and not (r.run_id in touched
                                                                         and touched[r.run_id].exclude)]
    hashes = {r.benchmark.spec_hash for r in recs if r.benchmark.spec_hash}
    if len(hashes) > 1:
        raise BenchError(f"records of {benchmark_id} were made with different benchmark specs "
                         f"(spec_hash {', '.join(sorted(hashes))}); they cannot share a leaderboard")
    recs, notes = dedupe_records([r for r in recs if r.status != "failed"])
    fingerprints = sorted({r.data.fingerprint for r in recs})
    if len(fingerprints) > 1:
        notes.append(f"the records were made on {len(fingerprints)} different data sets (fingerprints "
                     f"{', '.join(f[:8] for f in fingerprints)}): each is its own row, never averaged (data column)")
    rows = [{"method": r.method, "label": method_label(r.method, r.config), "backbone": r.backbone,
             "recipe": recipe_label(r.recipe) or "",
             "config": setup_hash(r.config)[:8],
             "collapsed": r.status == "collapsed", "wall_time_s": r.wall_time_s, "images_seen": r.images_seen,
             "params": r.params, "hardware": [_hardware(h) for h in r.train_hardware],
             "run_id": r.run_id, "data": r.data.fingerprint[:8],
             **{f"score:{k}": v for k, v in r.scores.items()}}
            for r in recs]
    scores = sorted({c[6:] for row in rows for c in row if c.startswith("score:")},
                    key=lambda k: (k != headline, not k.endswith("_top1"), k))  # headline, top-1s, rest
    if headline not in scores:
        scores.insert(0, headline)
    columns = ["rank", "method", "label", *_KEYS[1:], "n", "status"] \
        + [f"{k}_{s}" for k in scores for s in ("mean", "std", "ci95")] \
        + ["params", "images_seen", "wall_time_s", "hardware", "run_ids"]
    attrs = dict(headline=headline, notes=notes, many_data=len(fingerprints) > 1,
                 errata=[f"{', '.join(ids)}: {e.note}" + (" (left out of the means)" if e.exclude else "")
                         for e, ids in _group_errata(touched)])
    if not rows:
        df = pd.DataFrame(columns=columns)
        df.attrs.update(attrs)
        return df
    raw = pd.DataFrame(rows)
    out = []
    for key, g in raw.groupby(_KEYS, sort=False, dropna=False):
        row = dict(zip(_KEYS, key), label=g["label"].iloc[0], n=len(g), wall_time_s=g["wall_time_s"].mean(),
                   images_seen=pd.to_numeric(g["images_seen"]).mean(), params=g["params"].dropna().max(),
                   hardware="; ".join(dict.fromkeys(h for hs in g["hardware"] for h in hs if h)),
                   run_ids=" ".join(g["run_id"]),
                   status=f"collapsed {int(g['collapsed'].sum())}/{len(g)}" if g["collapsed"].any() else "ok")
        for k in scores:
            col = g[f"score:{k}"].dropna() if f"score:{k}" in g else pd.Series(dtype=float)
            row[f"{k}_mean"], row[f"{k}_std"] = col.mean(), col.std(ddof=1)
            row[f"{k}_ci95"] = ci95_halfwidth(row[f"{k}_std"], len(col))
        out.append(row)
    df = pd.DataFrame(out).sort_values(f"{headline}_mean", ascending=False, na_position="last", kind="stable")
    df["rank"] = df[f"{headline}_mean"].rank(ascending=False, method="min").astype("Int64")
    df = df.reset_index(drop=True)[columns]
    df.attrs.update(attrs, estimator_tau=estimator_agreement(df, recs, headline))
    return df


def dedupe_records(records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """Each run counts once: a run_id found in several files is kept once, and runs of the same config and
    seed on the same data (a copied or re-probed record) are one seed, not several - the latest is kept.
    Returns the kept records and one note per duplicate group."""
    notes: list[str] = []
    by_id: dict[str, list[RunRecord]] = {}
    for r in records:
        by_id.setdefault(r.run_id, []).append(r)
    for run_id, group in by_id.items():
        if len(group) > 1:
            notes.append(f"run {run_id} is in {len(group)} record files: counted once")
    by_seed: dict[tuple, list[RunRecord]] = {}
    for group in by_id.values():
        r = group[0]
        key = (r.method, r.backbone, recipe_label(r.recipe), r.config_hash, r.seed, r.data.fingerprint)
        by_seed.setdefault(key, []).append(r)
    kept = []
    for (method, _, _, _, seed, _), group in by_seed.items():
        group.sort(key=lambda r: (r.created_at, r.run_id))
        kept.append(group[-1])
        if len(group) > 1:
            notes.append(f"{', '.join(r.run_id for r in group)} are one run of {method} seed {seed} (same config and "
                         f"data), not {len(group)} seeds: kept the latest, {group[-1].run_id}")
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(kept, key=lambda r: order[id(r)]), notes


def _group_errata(touched: dict[str, Erratum]) -> list[tuple[Erratum, list[str]]]:
    groups: dict[int, tuple[Erratum, list[str]]] = {}
    for run_id, e in sorted(touched.items()):
        groups.setdefault(id(e), (e, []))[1].append(run_id)
    return list(groups.values())


def md_cell(text: str) -> str:
    """A markdown table cell: ``|`` escaped, line breaks folded into spaces."""
    return " ".join(str(text).replace("|", "\\|").split())


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells starting with ``= + - @`` (or a tab / carriage return) get a leading ``'``, so a spreadsheet
    shows them as text instead of running them as formulas (OWASP's CSV-injection advice)."""
    def cell(v):
        return "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(cell)
    return out


def _cells(df: pd.DataFrame, tex: bool) -> tuple[list[str], list[list[str]]]:
    keys, headline = score_keys(df), headline_of(df)
    esc = tex_escape if tex else str
    many_data = bool(df.attrs.get("many_data"))
    header = ["rank", "method", "backbone", "recipe", "config", *(["data"] if many_data else []), *keys,
              f"95% CI ({headline})", "n", "params", "images seen", "wall time", "hardware", "status"]
    best = {k: df[f"{k}_mean"].max() for k in keys}
    rows = []
    for _, r in df.iterrows():
        text = [str(r["rank"]) if not pd.isna(r["rank"]) else "–", r.get("label") or r["method"], r["backbone"],
                r["recipe"] or "–", r["config"], *([r["data"]] if many_data else [])]
        scores = []
        for k in keys:
            c = esc(fmt_pm(r[f"{k}_mean"], r[f"{k}_std"]))
            if not pd.isna(best[k]) and r[f"{k}_mean"] == best[k]:
                c = rf"\textbf{{{c}}}" if tex else f"**{c}**"
            scores.append(c)
        tail = [fmt_ci(r[f"{headline}_ci95"]), f"(n={r['n']})", fmt_params(r["params"]),
                fmt_count(r["images_seen"]), fmt_duration(r["wall_time_s"]), r["hardware"] or "–", r["status"]]
        rows.append([*map(esc, text), *scores, *map(esc, tail)])
    return [esc(h) for h in header], rows


def _tex_table(df: pd.DataFrame, title: str | None, fit: bool = False) -> str:
    """A booktabs ``table``; ``fit`` shrinks a tabular wider than the line to the line width (needs graphicx)."""
    header, rows = _cells(df, tex=True)
    lines = [r"\begin{table}[t]", r"\centering"]
    if title:
        lines.append(rf"\caption{{{tex_escape(title)}}}")
    n_scores = len(score_keys(df))
    spec = "l" * (6 if df.attrs.get("many_data") else 5) + "r" * (n_scores + 5) + "ll"
    if fit:
        lines.append(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
              *(" & ".join(r) + r" \\" for r in rows), r"\bottomrule", r"\end{tabular}" + ("}" if fit else ""),
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def grid_edge_notes(spec, records: list[RunRecord]) -> list[str]:
    """One line per (probe, hyper-parameter, value) that the hold-out selection picked at the edge of the protocol's
    grid (its smallest or largest value, on an axis of >= 3 values; a weight decay of 0 is no edge): the best value may
    lie outside the grid, which the next benchmark version should widen. Counted over the listed (not failed) runs."""
    runs, grids = [r for r in records if r.status != "failed"], spec.grids
    hits: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        for key, chosen in r.selected.items():
            probe = key.rsplit("_", 1)[-1]        # extra label columns: "shape_attentive"
            for axis, values in grids.get(probe, {}).items():
                v = chosen.get(axis)
                if len(values) < 3 or v is None or v == 0 or v not in (min(values), max(values)):
                    continue
                hits.setdefault((key, axis, v, "largest" if v == max(values) else "smallest", values), []).append(r)
    return [f"{key} {axis}={v:g} (the grid's {side} of {', '.join(f'{x:g}' for x in values)}): {len(rs)} of "
            f"{len(runs)} runs ({', '.join(sorted({r.method for r in rs}))})"
            for (key, axis, v, side, values), rs in sorted(hits.items(), key=lambda kv: (*kv[0][:2], -len(kv[1])))]


def estimator_lines(df: pd.DataFrame) -> list[str]:
    """The markdown section of :func:`bench.rank_agreement.estimator_agreement`; [] without estimators."""
    taus = df.attrs.get("estimator_tau") or []
    if not taus:
        return []
    return ["", f"Label-free estimators vs {headline_of(df)} (Kendall tau-b over the rows, each row's mean "
            f"estimator; n rows):", "", *(f"- {t['estimator']}: {fmt_tau(t)}" for t in taus)]


def render_leaderboard(df: pd.DataFrame, fmt: str, title: str | None = None, *,
                       records: list[RunRecord] | None = None, record_href: dict[str, str] | None = None,
                       standalone: bool = False, notes: list[str] = ()) -> str:
    """``md`` (cells ``71.3 ± 0.4``, best bold; ``notes``, e.g. ``grid_edge_notes``, listed under the table), ``csv``
    (mean/std/ci95/n columns, full precision), ``tex``
    (booktabs, best mean per score column in bold; ``standalone=True`` gives a compilable document) or ``html``
    (a self-contained page, see bench.leaderboard_html; ``records`` / ``record_href`` add per-run details)."""
    if fmt == "csv":
        return csv_safe(df).to_csv(index=False)
    if fmt == "md":
        header, rows = _cells(df, tex=False)
        rows = [[md_cell(c) for c in r] for r in rows]
        lines = [f"## {title}", ""] if title else []
        lines += [f"Cells: mean ± std over n seeds, best **bold**; 95% CI half-width t(0.975, n-1) * std / sqrt(n) "
                  f"for {headline_of(df)}; ranked by {headline_of(df)}.", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        if df.attrs.get("notes"):
            lines += ["", "Notes:", "", *(f"- {n}" for n in df.attrs["notes"])]
        if df.attrs.get("errata"):
            lines += ["", "Errata (results/errata.yaml):", "", *(f"- {n}" for n in df.attrs["errata"])]
        lines += estimator_lines(df)
        if notes:
            lines += ["", "Selected at an edge of the protocol's probe grid (the best value may lie outside it; "
                      "the next benchmark version should widen the grid):", "", *(f"- {n}" for n in notes)]
        return "\n".join(lines) + "\n"
    if fmt == "tex":
        return tex_document(_tex_table(df, title, fit=True)) if standalone else _tex_table(df, title)
    if fmt == "html":
        from bench.leaderboard_html import render_html
        return render_html(df, title or "leaderboard", records=records, record_href=record_href)
    raise ConfigError(f"unknown leaderboard format {fmt!r}; known: {', '.join(FORMATS)}")


def save_leaderboard(df: pd.DataFrame, benchmark_id: str, out_dir: str | os.PathLike,
                     formats: tuple[str, ...] = ("md", "csv", "tex"), results_dir: str | os.PathLike = "results",
                     *, records: list[RunRecord] | None = None, standalone: bool = False,
                     notes: list[str] = ()) -> list[Path]:
    """Write a built leaderboard to ``out_dir/<benchmark_id>/leaderboard.<fmt>`` (atomically). The html page
    links each run to its record ``results_dir/<benchmark_id>/<run_id>.json`` by a relative path; ``records``
    (default: read from results_dir) fill its per-run details."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown leaderboard format {fmt!r}; known: {', '.join(FORMATS)}")
    if df.empty:
        raise BenchError(f"no records for {benchmark_id} in {Path(results_dir) / benchmark_id} "
                         "(failed runs are not listed); run `bench run --benchmark ...` first")
    folder = Path(out_dir) / check_benchmark_id(benchmark_id)
    extra: dict = {}
    if "html" in formats:
        records = records if records is not None else load_records(results_dir, benchmark_id)
        rel = os.path.relpath(Path(results_dir) / benchmark_id, folder)
        extra = {"records": records,
                 "record_href": {r.run_id: Path(rel, f"{r.run_id}.json").as_posix() for r in records}}
    texts = {fmt: render_leaderboard(df, fmt, title=benchmark_id, standalone=standalone, notes=notes, **extra)
             for fmt in formats}  # every format rendered before any is written: all or none
    return atomic_write_many({folder / f"leaderboard.{fmt}": text.encode() for fmt, text in texts.items()})


def leaderboard_from_results(benchmark, results_dir: str | os.PathLike):
    """Read the benchmark's records from ``results_dir`` (once), refuse any its spec or data fingerprint disowns
    (:func:`bench.benchmarks.check_records`), apply ``results_dir/errata.yaml`` and build the table (ranked by the
    benchmark's headline). ``benchmark`` is a :class:`bench.benchmarks.Benchmark` or an id: a registered one is
    looked up, any other (old ad-hoc ids) is only aggregated, ranked by ``linear_top1``.
    Returns (table, records, spec or None)."""
    from bench.benchmarks import BENCHMARKS, check_records
    spec = BENCHMARKS.get(benchmark) if isinstance(benchmark, str) else benchmark
    benchmark_id = spec.id if spec is not None else benchmark
    records = load_records(results_dir, benchmark_id)
    if spec is not None:
        check_records(spec, records)
    df = build_leaderboard(records, benchmark_id, headline=spec.headline if spec is not None else "linear_top1",
                           errata=load_errata(results_dir))
    return df, records, spec


def write_leaderboard(benchmark, results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                      formats: tuple[str, ...] = ("md", "csv", "tex"),
                      standalone: bool = False) -> tuple[pd.DataFrame, list[Path]]:
    """:func:`leaderboard_from_results`, then write ``out_dir/<id>/leaderboard.<fmt>``. Returns the table and the
    written paths."""
    df, records, spec = leaderboard_from_results(benchmark, results_dir)
    benchmark_id = spec.id if spec is not None else benchmark
    notes = grid_edge_notes(spec, records) if spec is not None else []
    return df, save_leaderboard(df, benchmark_id, out_dir, formats, results_dir, records=records, standalone=standalone,
                                notes=notes)
