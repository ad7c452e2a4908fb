"""Suite leaderboards (``bench leaderboard SUITE-vN``): one row per encoder setup over a suite's benchmarks, with
CLIP_benchmark's summary - each dataset's top-1, their mean, and the average rank across datasets.

A row is a setup as in :mod:`bench.leaderboard` (method, backbone, recipe, config without the seed); each
benchmark's records are checked (spec hash, data fingerprint), deduplicated and filtered (failed runs, ``exclude``
errata) as its own leaderboard does. For every score of the suite (headline first):

- per dataset d: mean, std (ddof=1), 95% CI half-width t(0.975, n-1) * std / sqrt(n) and n over the row's seeds;
- **mean**: per seed s with a record on every dataset, m_s = mean_d x_{d,s}; then mean / std / CI / n over those
  seeds;
- **average rank**: per such seed, r_s = mean_d (1 + #{other complete rows whose dataset-d mean exceeds x_{d,s}});
  then mean / std / CI / n over seeds (one seed per row: CLIP_benchmark's average rank of the means).

Only complete rows (every dataset, one data copy each) get a mean and a rank, and ranks are among complete rows:
a partial row is listed apart, with the datasets it lacks, never beside the aggregates."""

from __future__ import annotations

import io
import math
import os
from html import escape
from pathlib import Path

import pandas as pd

from bench.benchmarks.suites import Suite, get_suite
from bench.cells import fmt_ci, fmt_pm, tex_document, tex_escape
from bench.config import recipe_label
from bench.errors import BenchError, ConfigError
from bench.io import atomic_write_many
from bench.leaderboard import FORMATS, ci95_halfwidth, csv_safe, dedupe_records, md_cell, method_label
from bench.records import RunRecord, load_errata, load_records, setup_hash

__all__ = ["build_suite_leaderboard", "render_suite_leaderboard", "suite_boards", "write_suite_leaderboard"]

_KEYS = ["method", "backbone", "recipe", "config"]


def _stats(values: list[float]) -> dict:
    s = pd.Series(values, dtype=float)
    std = s.std(ddof=1) if len(s) > 1 else math.nan
    return {"mean": s.mean() if len(s) else math.nan, "std": std, "ci95": ci95_halfwidth(std, len(s)), "n": len(s)}


def _key(r: RunRecord) -> tuple:
    return (r.method, r.backbone, recipe_label(r.recipe) or "",
            setup_hash(r.config)[:8])


def _usable(suite: Suite, records: dict[str, list[RunRecord]], errata) -> tuple[dict[str, list[RunRecord]], list[str]]:
    """Per benchmark, the records its own leaderboard would count, and notes."""
    from bench.benchmarks import check_records
    out, notes = {}, []
    for spec in suite.specs():
        recs = records.get(spec.id, [])
        check_records(spec, recs)
        recs = [r for r in recs if r.status != "failed" and not (r.run_id in errata and errata[r.run_id].exclude)]
        recs, dup = dedupe_records(recs)
        out[spec.id] = recs
        notes += [f"{spec.id}: {n}" for n in dup]
    return out, notes


def build_suite_leaderboard(suite: Suite | str, records: dict[str, list[RunRecord]], errata=None) -> pd.DataFrame:
    """The table (see the module docstring): columns ``rank, method, label, backbone, recipe, config, n, complete,
    missing`` then, per score k, ``<benchmark>:<k>_{mean,std,ci95,n}`` per benchmark and ``mean:<k>_...``,
    ``avg_rank:<k>_...``; complete rows first, ranked by the headline mean; ``attrs``: suite, scores, notes."""
    suite = get_suite(suite) if isinstance(suite, str) else suite
    usable, notes = _usable(suite, records, errata or {})
    benches = list(suite.benchmarks)
    by_row: dict[tuple, dict[str, list[RunRecord]]] = {}
    labels: dict[tuple, str] = {}
    for bid, recs in usable.items():
        for r in recs:
            by_row.setdefault(_key(r), {}).setdefault(bid, []).append(r)
            labels.setdefault(_key(r), method_label(r.method, r.config))
    # x[row][bench][score] -> {seed: value}; a (row, dataset) on two data copies is no cell (never averaged)
    x: dict[tuple, dict[str, dict[str, dict[int, float]]]] = {}
    for key, cells in by_row.items():
        x[key] = {}
        for bid, recs in cells.items():
            prints = sorted({r.data.fingerprint for r in recs})
            if len(prints) > 1:
                notes.append(f"{labels[key]} ({key[1]}) on {bid}: records on {len(prints)} data copies (fingerprints "
                             f"{', '.join(p[:8] for p in prints)}); not averaged, so the row is incomplete")
                continue
            x[key][bid] = {k: {r.seed: r.scores[k] for r in recs if k in r.scores} for k in suite.scores}
    complete = {k: {key for key, cells in x.items() if all(cells.get(b, {}).get(k) for b in benches)
                    and set.intersection(*(set(cells[b][k]) for b in benches))} for k in suite.scores}
    rows = []
    for key, cells in x.items():
        row = dict(zip(_KEYS, key), label=labels[key])
        missing = [b for b in benches if not cells.get(b, {}).get(suite.headline)]
        row.update(complete=not missing, missing=" ".join(missing))
        for k in suite.scores:
            for b in benches:
                for stat, v in _stats(list(cells.get(b, {}).get(k, {}).values())).items():
                    row[f"{b}:{k}_{stat}"] = v
            agg = _aggregates(key, x, benches, k, complete[k])
            for name, values in agg.items():
                for stat, v in _stats(values).items():
                    row[f"{name}:{k}_{stat}"] = v if key in complete[k] else math.nan
        row["n"] = int(row[f"mean:{suite.headline}_n"]) if row["complete"] else 0
        rows.append(row)
    columns = ["rank", *_KEYS[:1], "label", *_KEYS[1:], "n", "complete", "missing"] + [
        f"{g}:{k}_{stat}" for k in suite.scores for g in (*benches, "mean", "avg_rank")
        for stat in ("mean", "std", "ci95", "n")]
    df = pd.DataFrame(rows, columns=[c for c in columns if c != "rank"])
    if not df.empty:
        df = df.sort_values(["complete", f"mean:{suite.headline}_mean", f"{benches[0]}:{suite.headline}_mean"],
                            ascending=[False, False, False], na_position="last", kind="stable").reset_index(drop=True)
    head = df[f"mean:{suite.headline}_mean"] if not df.empty else pd.Series(dtype=float)
    df.insert(0, "rank", head.rank(ascending=False, method="min").astype("Int64"))
    df.attrs.update(suite=suite.id, scores=list(suite.scores), benchmarks=benches, notes=notes)
    return df


def _aggregates(key, x, benches: list[str], k: str, complete: set) -> dict[str, list[float]]:
    """Per seed with a score on every dataset: the mean over datasets and the average rank (see the module doc)."""
    if key not in complete:
        return {"mean": [], "avg_rank": []}
    cells = x[key]
    seeds = sorted(set.intersection(*(set(cells[b][k]) for b in benches)))
    others = {b: [sum(x[o][b][k].values()) / len(x[o][b][k]) for o in complete if o != key] for b in benches}
    means = [sum(cells[b][k][s] for b in benches) / len(benches) for s in seeds]
    ranks = [sum(1 + sum(m > cells[b][k][s] for m in others[b]) for b in benches) / len(benches) for s in seeds]
    return {"mean": means, "avg_rank": ranks}


def _with_ci(r, col: str, digits: int) -> str:
    """``71.3 ±0.8`` (mean and 95% CI half-width), the mean alone when there is no CI (one seed)."""
    mean, h = r[f"{col}_mean"], r[f"{col}_ci95"]
    return fmt_pm(mean, math.nan, digits=digits) + ("" if pd.isna(h) else f" {fmt_ci(h, digits)}")


def _short(bid: str) -> str:
    return bid.rsplit("-v", 1)[0]


def _cells(df: pd.DataFrame, k: str, complete: bool, tex: bool = False) -> tuple[list[str], list[list[str]]]:
    benches = df.attrs["benchmarks"]
    esc = tex_escape if tex else md_cell
    sub = df[df["complete"] == complete]
    if complete:  # each score's table ranked by its own mean
        sub = sub.sort_values(f"mean:{k}_mean", ascending=False, kind="stable")
        ranks = sub[f"mean:{k}_mean"].rank(ascending=False, method="min")
    head = ["rank", "method", "backbone", "config", *map(_short, benches)]
    head += ["mean (95% CI)", "avg rank (95% CI)", "n"] if complete else ["missing"]
    best = {b: sub[f"{b}:{k}_mean"].max() for b in benches}
    rows = []
    for i, r in sub.iterrows():
        cells = []
        for b in benches:
            c = fmt_pm(r[f"{b}:{k}_mean"], r[f"{b}:{k}_std"])
            if complete and r[f"{b}:{k}_n"] and r[f"{b}:{k}_n"] != r["n"]:
                c += f" (n={int(r[f'{b}:{k}_n'])})"
            if complete and not pd.isna(best[b]) and r[f"{b}:{k}_mean"] == best[b]:
                c = rf"\textbf{{{esc(c)}}}" if tex else f"**{c}**"
            else:
                c = esc(c)
            cells.append(c)
        rank = "–" if not complete or pd.isna(ranks[i]) else str(int(ranks[i]))
        lead = [rank, r["label"], r["backbone"], r["config"]]
        tail = ([_with_ci(r, f"mean:{k}", 1), _with_ci(r, f"avg_rank:{k}", 2), f"n={r['n']}"] if complete
                else [" ".join(map(_short, str(r["missing"]).split()))])
        rows.append([*map(esc, lead), *cells, *map(esc, tail)])
    return head, rows


def _md(df: pd.DataFrame) -> str:
    suite = df.attrs["suite"]
    lines = [f"## {suite}", "", f"Per dataset: mean ± std of top-1 (%) over n seeds (best **bold**); mean: over the "
             f"{len(df.attrs['benchmarks'])} datasets per seed, then over seeds, with the 95% CI half-width "
             "t(0.975, n-1)·std/√n; avg rank: per dataset among the complete rows (1 = best), averaged over datasets "
             "(CLIP_benchmark's summary). Rows without every dataset get no aggregate and are listed apart.", ""]
    for k in df.attrs["scores"]:
        for complete in (True, False):
            head, rows = _cells(df, k, complete)
            if not rows:
                continue
            lines += [f"### {k}" + ("" if complete else " - incomplete (no aggregate)"), "",
                      "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
                      *("| " + " | ".join(r) + " |" for r in rows), ""]
    if df.attrs.get("notes"):
        lines += ["Notes:", "", *(f"- {n}" for n in df.attrs["notes"]), ""]
    return "\n".join(lines)


def _tex(df: pd.DataFrame, standalone: bool) -> str:
    parts = []
    for k in df.attrs["scores"]:
        head, rows = _cells(df, k, True, tex=True)
        if not rows:
            continue
        spec = "llll" + "r" * (len(head) - 4)
        parts += [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(df.attrs['suite'])}: {tex_escape(k)}}}",
                  r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
                  rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(map(tex_escape, head)) + r" \\",
                  r"\midrule", *(" & ".join(r) + r" \\" for r in rows), r"\bottomrule", r"\end{tabular}}",
                  r"\end{table}", ""]
    text = "\n".join(parts) or "% no complete rows\n"
    return tex_document(text) if standalone else text


def heatmap_svg(df: pd.DataFrame, k: str) -> str:
    """Models (rows) x datasets (columns) of score ``k``'s means, colour = top-1, each cell annotated, as an inline
    ``<svg>`` (matplotlib, text as text, no date stamp)."""
    import matplotlib
    from matplotlib.figure import Figure

    benches = df.attrs["benchmarks"]
    values = df[[f"{b}:{k}_mean" for b in benches]].to_numpy(dtype=float)
    names = [f"{r['label']} ({r['backbone']})" + ("" if r["complete"] else " *") for _, r in df.iterrows()]
    fig = Figure(figsize=(1.2 + 0.75 * len(benches), 1.2 + 0.4 * len(df)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(benches)), [_short(b) for b in benches], rotation=45, ha="right")
    ax.set_yticks(range(len(names)), [n.replace("$", r"\$") for n in names])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            ax.text(j, i, "–" if math.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=8,
                    color="black" if not math.isnan(v) and v > 60 else "white")
    fig.colorbar(im, ax=ax, label=f"{k} (%)")
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ssl-bench"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _html(df: pd.DataFrame) -> str:
    from bench.leaderboard_html import _CSS, _JS
    suite, headline = df.attrs["suite"], df.attrs["scores"][0]
    body = [f"<h1>{escape(suite)}</h1>", f'<p class="note">{escape(_md(df).splitlines()[2])}</p>']
    for k in df.attrs["scores"]:
        for complete in (True, False):
            head, rows = _cells(df, k, complete)
            if not rows:
                continue
            body.append(f"<h2>{escape(k)}{'' if complete else ' – incomplete (no aggregate)'}</h2>")
            body.append('<table class="lb"><thead><tr>' + "".join(
                f'<th data-type="{"text" if i in (1, 2, 3) or h == "missing" else "num"}">{escape(h)}</th>'
                for i, h in enumerate(head)) + "</tr></thead><tbody>")
            for r in rows:
                tds = "".join(f'<td class="{"best" if c.startswith("**") else ""}">{escape(c.strip("*"))}</td>'
                              for c in r)
                body.append(f"<tr>{tds}</tr>")
            body.append("</tbody></table>")
    body.append(f'<h2>{escape(headline)} per dataset</h2><div class="plot">{heatmap_svg(df, headline)}</div>')
    if df.attrs.get("notes"):
        body.append(f'<p class="note">Notes: {escape("; ".join(df.attrs["notes"]))}</p>')
    body.append(f'<p class="note">Generated by <code>bench leaderboard {escape(suite)} --format html</code>; '
                f"rows marked * lack a dataset.</p>")
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      f"<title>{escape(suite)} leaderboard</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
                      *body, f"<script>{_JS}</script>", "</body>", "</html>", ""])


def render_suite_leaderboard(df: pd.DataFrame, fmt: str, standalone: bool = False) -> str:
    """``md`` (a table per score, complete rows then incomplete ones), ``csv`` (every column), ``tex`` (a booktabs
    table per score, complete rows) or ``html`` (tables + a models x datasets heat map)."""
    if fmt == "csv":
        return csv_safe(df).to_csv(index=False)
    if fmt == "md":
        return _md(df)
    if fmt == "tex":
        return _tex(df, standalone)
    if fmt == "html":
        return _html(df)
    raise ConfigError(f"unknown leaderboard format {fmt!r}; known: {', '.join(FORMATS)}")


def suite_leaderboard_from_results(suite: Suite | str, results_dir: str | os.PathLike) -> pd.DataFrame:
    suite = get_suite(suite) if isinstance(suite, str) else suite
    records = {b: load_records(results_dir, b) for b in suite.benchmarks}
    return build_suite_leaderboard(suite, records, load_errata(results_dir))


def write_suite_leaderboard(suite: Suite | str, results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                            formats: tuple[str, ...] = ("md", "csv"), standalone: bool = False
                            ) -> tuple[pd.DataFrame, list[Path]]:
    """Build from ``results_dir`` and write ``out_dir/<suite id>/leaderboard.<fmt>`` (all formats rendered before
    any is written)."""
    suite = get_suite(suite) if isinstance(suite, str) else suite
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown leaderboard format {fmt!r}; known: {', '.join(FORMATS)}")
    df = suite_leaderboard_from_results(suite, results_dir)
    if df.empty:
        raise BenchError(f"no records of any {suite.id} benchmark under {results_dir}; run `bench eval --model ... "
                         f"--suite {suite.id}` first")
    texts = {fmt: render_suite_leaderboard(df, fmt, standalone) for fmt in formats}
    folder = Path(out_dir) / suite.id
    return df, atomic_write_many({folder / f"leaderboard.{fmt}": t.encode() for fmt, t in texts.items()})


def suite_boards(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The suite table as per-benchmark boards for :mod:`bench.tables`: ``{benchmark id | "<suite> mean" |
    "<suite> avg rank": frame with method, backbone, recipe, config, n and <score>_mean / _std}``."""
    out = {}
    groups = [(b, b) for b in df.attrs["benchmarks"]] + [("mean", f"{df.attrs['suite']} mean"),
                                                          ("avg_rank", f"{df.attrs['suite']} avg rank")]
    for col, name in groups:
        board = df[["method", "backbone", "recipe", "config", "n"]].copy()
        for k in df.attrs["scores"]:
            board[f"{k}_mean"], board[f"{k}_std"] = df[f"{col}:{k}_mean"], df[f"{col}:{k}_std"]
        board.attrs["lower_is_better"] = col == "avg_rank"
        out[name] = board
    return out
