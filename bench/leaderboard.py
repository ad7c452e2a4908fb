"""Leaderboards: one benchmark version's records -> mean ± std over seeds per (method, backbone, setup).

Only records of exactly one benchmark id are ever aggregated (versions are never mixed); failed runs
are left out, collapsed runs stay in and are marked. Seeds of one setup are grouped by recipe and by
the hash of the config without its seed, so runs with different hyper-parameters are never averaged."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bench.errors import BenchError, ConfigError
from bench.io import atomic_write_text
from bench.records import RunRecord, config_hash, load_records

__all__ = ["FORMATS", "build_leaderboard", "render_leaderboard", "save_leaderboard", "write_leaderboard"]

FORMATS = ("md", "csv", "tex")
_KEYS = ["method", "backbone", "recipe", "config"]


def _score_keys(df: pd.DataFrame) -> list[str]:
    return [c[:-5] for c in df.columns if c.endswith("_mean")]


def build_leaderboard(records: list[RunRecord], benchmark_id: str, headline: str = "linear_top1") -> pd.DataFrame:
    """One row per setup: ``rank, method, backbone, recipe, config, n, status, <score>_mean, <score>_std, ...,
    wall_time_s, images_seen``; sorted by the headline mean (descending). std uses ddof=1 (NaN for n=1)."""
    recs = [r for r in records if r.benchmark.id == benchmark_id]
    hashes = {r.benchmark.spec_hash for r in recs if r.benchmark.spec_hash}
    if len(hashes) > 1:
        raise BenchError(f"records of {benchmark_id} were made with different benchmark specs "
                         f"(spec_hash {', '.join(sorted(hashes))}); they cannot share a leaderboard")
    rows = [{"method": r.method, "backbone": r.backbone, "recipe": r.recipe or "",
             "config": config_hash({k: v for k, v in r.config.items() if k != "seed"})[:8],
             "collapsed": r.status == "collapsed", "wall_time_s": r.wall_time_s, "images_seen": r.images_seen,
             **{f"score:{k}": v for k, v in r.scores.items()}}
            for r in recs if r.status != "failed"]
    scores = sorted({c[6:] for row in rows for c in row if c.startswith("score:")},
                    key=lambda k: (k != headline, not k.endswith("_top1"), k))  # headline, top-1s, rest
    if headline not in scores:
        scores.insert(0, headline)
    columns = ["rank", *_KEYS, "n", "status"] + [f"{k}_{s}" for k in scores for s in ("mean", "std")] \
        + ["wall_time_s", "images_seen"]
    if not rows:
        return pd.DataFrame(columns=columns)
    raw = pd.DataFrame(rows)
    out = []
    for key, g in raw.groupby(_KEYS, sort=False, dropna=False):
        row = dict(zip(_KEYS, key), n=len(g), wall_time_s=g["wall_time_s"].mean(),
                   images_seen=g["images_seen"].mean(),
                   status=f"collapsed {int(g['collapsed'].sum())}/{len(g)}" if g["collapsed"].any() else "ok")
        for k in scores:
            col = g[f"score:{k}"] if f"score:{k}" in g else pd.Series(dtype=float)
            row[f"{k}_mean"], row[f"{k}_std"] = col.mean(), col.std(ddof=1)
        out.append(row)
    df = pd.DataFrame(out).sort_values(f"{headline}_mean", ascending=False, na_position="last", kind="stable")
    df["rank"] = df[f"{headline}_mean"].rank(ascending=False, method="min").astype("Int64")
    return df.reset_index(drop=True)[columns]


def _pm(mean: float, std: float, pm: str) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.1f}" if pd.isna(std) else f"{mean:.1f}{pm}{std:.1f}"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(s: str) -> str:
    return "".join(_TEX.get(c, c) for c in s)


def _cells(df: pd.DataFrame, pm: str, tex: bool) -> tuple[list[str], list[list[str]]]:
    keys = _score_keys(df)
    header = ["rank", "method", "backbone", "recipe", "config", *keys, "n", "time (s)", "images seen", "status"]
    best = {k: df[f"{k}_mean"].max() for k in keys}
    rows = []
    for _, r in df.iterrows():
        cells = [str(r["rank"]) if not pd.isna(r["rank"]) else "–", r["method"], r["backbone"],
                 r["recipe"] or "–", r["config"]]
        if tex:
            cells = [_tex_escape(str(c)) for c in cells]
        for k in keys:
            c = _pm(r[f"{k}_mean"], r[f"{k}_std"], pm)
            cells.append(rf"\textbf{{{c}}}" if tex and not pd.isna(best[k]) and r[f"{k}_mean"] == best[k] else c)
        cells += [f"(n={r['n']})", f"{r['wall_time_s']:.0f}", f"{r['images_seen']:,.0f}", r["status"]]
        rows.append([c.replace("–", "--") for c in cells] if tex else cells)
    if tex:
        header = [_tex_escape(h) for h in header]
    return header, rows


def render_leaderboard(df: pd.DataFrame, fmt: str, title: str | None = None) -> str:
    """``md`` (cells ``71.3 ± 0.4``), ``csv`` (mean/std/n columns, full precision) or ``tex`` (booktabs,
    best mean per score column in bold)."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "md":
        header, rows = _cells(df, " ± ", tex=False)
        lines = [f"## {title}", ""] if title else []
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    if fmt == "tex":
        header, rows = _cells(df, r" $\pm$ ", tex=True)
        lines = [r"\begin{table}[t]", r"\centering"]
        if title:
            lines.append(rf"\caption{{{_tex_escape(title)}}}")
        lines += [rf"\begin{{tabular}}{{{'l' * 5 + 'r' * (len(header) - 6) + 'l'}}}", r"\toprule",
                  " & ".join(header) + r" \\", r"\midrule", *(" & ".join(r) + r" \\" for r in rows),
                  r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    raise ConfigError(f"unknown leaderboard format {fmt!r}; known: {', '.join(FORMATS)}")


def save_leaderboard(df: pd.DataFrame, benchmark_id: str, out_dir: str | os.PathLike,
                     formats: tuple[str, ...] = ("md", "csv", "tex"), results_dir: str | os.PathLike = "results"
                     ) -> list[Path]:
    """Write a built leaderboard to ``out_dir/<benchmark_id>/leaderboard.<fmt>`` (atomically)."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown leaderboard format {fmt!r}; known: {', '.join(FORMATS)}")
    if df.empty:
        raise BenchError(f"no records for {benchmark_id} in {Path(results_dir) / benchmark_id} "
                         "(failed runs are not listed); run `bench run --benchmark ...` first")
    return [atomic_write_text(Path(out_dir) / benchmark_id / f"leaderboard.{fmt}",
                              render_leaderboard(df, fmt, title=benchmark_id)) for fmt in formats]


def write_leaderboard(benchmark_id: str, results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                      formats: tuple[str, ...] = ("md", "csv", "tex"), headline: str = "linear_top1") -> list[Path]:
    """Build the leaderboard from ``results_dir`` and write ``out_dir/<benchmark_id>/leaderboard.<fmt>``."""
    df = build_leaderboard(load_records(results_dir, benchmark_id), benchmark_id, headline=headline)
    return save_leaderboard(df, benchmark_id, out_dir, formats, results_dir)
