"""``leaderboard.html``: one self-contained static page per benchmark version (inline CSS, JS and SVG; nothing
is fetched). It holds a sortable table (click a header), an accuracy-vs-cost plot (headline mean vs images
seen and vs wall time, one labelled point per row, error bars = 95% CI where n > 1) and, per row, a
``<details>`` block listing its run records (relative links to ``results/<id>/<run_id>.json``, seeds, status
and the probe hyper-parameters selected on the train hold-out)."""

from __future__ import annotations

import io
from html import escape

import pandas as pd

from bench.cells import (fmt_ci, fmt_count, fmt_duration, fmt_params, fmt_pm, fmt_tau, headline_of, score_keys)
from bench.records import RunRecord

__all__ = ["plot_svg", "render_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px} p.note{color:#57606a;margin:4px 0 16px;max-width:70em}
table.lb{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.lb th,table.lb td{padding:5px 9px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top;
white-space:nowrap} table.lb td:last-child{white-space:normal;min-width:20em;font-size:12px}
table.lb th{background:#f6f8fa;cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0}
table.lb th:hover{background:#eaeef2} table.lb td.num{text-align:right}
table.lb th[data-dir=asc]::after{content:" \\25B2"} table.lb th[data-dir=desc]::after{content:" \\25BC"}
table.lb td.best{font-weight:700} small.ci{display:block;color:#57606a;font-size:11px}
tr.collapsed td{background:#fff8e5} details ul{margin:4px 0;padding-left:18px} details li{margin:2px 0}
code{font-size:12px} .plot{margin:18px 0;max-width:1100px} .plot svg{width:100%;height:auto}
"""

_JS = """
document.querySelectorAll("table.lb").forEach(table => {
  table.tHead.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
    const asc = th.dataset.dir !== "asc", num = th.dataset.type === "num";
    table.tHead.querySelectorAll("th").forEach(h => delete h.dataset.dir);
    th.dataset.dir = asc ? "asc" : "desc";
    const val = row => {
      const c = row.cells[i];
      return c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
    };
    const rows = Array.from(table.tBodies[0].rows);
    rows.sort((a, b) => {
      let x = val(a), y = val(b);
      if (num) {
        x = parseFloat(x); y = parseFloat(y);
        if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);  // missing values last either way
        return asc ? x - y : y - x;
      }
      return asc ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(r => table.tBodies[0].appendChild(r));
  }));
});
"""


def point_labels(df: pd.DataFrame) -> pd.Series:
    """'method (backbone)' per row, extended by the recipe and then the config where that is ambiguous."""
    labels = _method_cells(df) + " (" + df["backbone"].astype(str)
    for extra in ("recipe", "config"):
        dup = labels.duplicated(keep=False)
        labels = labels.where(~dup, labels + ", " + df[extra].astype(str))
    return (labels + ")").str.replace("$", r"\$", regex=False)  # no mathtext: a '$' is a dollar sign


def _method_cells(df: pd.DataFrame) -> pd.Series:
    """The method column as shown: each row's label (method + added objectives), else its method name."""
    return (df["label"] if "label" in df else df["method"]).fillna(df["method"]).astype(str)


def plot_svg(df: pd.DataFrame, headline: str | None = None) -> str:
    """Headline mean (y) vs images seen and vs wall time (x), one labelled point per row, as an inline
    ``<svg>`` string (matplotlib, text kept as text, no date stamp so the page is reproducible)."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    headline = headline or headline_of(df)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    xs = [("images_seen", 1e6, "images seen (millions)"), ("wall_time_s", 60.0, "wall time (min, train + probe)")]
    names = point_labels(df)
    for ax, (col, scale, label) in zip(axes, xs):
        for i, r in df.iterrows():
            x, y = r[col] / scale, r[f"{headline}_mean"]
            if pd.isna(x) or pd.isna(y):
                continue
            err = r[f"{headline}_ci95"]
            marker = "x" if str(r["status"]).startswith("collapsed") else "o"
            ax.errorbar([x], [y], yerr=None if pd.isna(err) else [err], fmt=marker, ms=7, capsize=3)
            ax.annotate(names[i], (x, y), textcoords="offset points", xytext=(6, 5),
                        fontsize=9)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.15)
    axes[0].set_ylabel(f"{headline} (%)")
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ssl-bench"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: the svg element is inlined


def _selected(sel: dict) -> str:
    """``<br>knn: k=20, T=0.07`` per probe."""
    return "".join(f"<br>{escape(probe)}: " + escape(", ".join(f"{k}={v}" for k, v in hp.items()))
                   for probe, hp in sorted(sel.items()))


def _code(r: RunRecord) -> str:
    """``<br>code: trained a1b2c3d, probed e4f5a6b`` (git shas, short; ``-dirty`` kept), or "" when unknown."""
    def short(sha: str | None) -> str:
        return sha[:7] + ("-dirty" if sha.endswith("-dirty") else "") if sha else "?"
    trained = list(dict.fromkeys(short(s.get("git_sha")) for s in r.training))
    parts = ([f"trained {', '.join(trained)}"] if trained else []) + ([f"probed {short(r.git_sha)}"] if r.git_sha else [])
    return f"<br>code: {escape(', '.join(parts))}" if parts else ""


def _runs(run_ids: str, records: dict[str, RunRecord], hrefs: dict[str, str], headline: str) -> str:
    items = []
    for rid in str(run_ids).split():
        item = f'<a href="{escape(hrefs[rid])}"><code>{escape(rid)}</code></a>' if rid in hrefs else \
            f"<code>{escape(rid)}</code>"
        r = records.get(rid)
        if r is not None:
            score = r.scores.get(headline)
            item += (f"<br>seed {r.seed} · {escape(r.status)} · {escape(headline)} "
                     f"{'–' if score is None else f'{score:.2f}'}{_selected(r.selected)}{_code(r)}")
        items.append(f"<li>{item}</li>")
    n = len(items)
    return f"<details><summary>{n} run{'s' * (n != 1)}</summary><ul>{''.join(items)}</ul></details>"


def _td(text: str, v=None, cls: str = "", extra: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + ("" if v is None or pd.isna(v) else f' data-v="{v}"')
    return f"<td{attrs}>{escape(str(text))}{extra}</td>"


def _estimator_section(df: pd.DataFrame, headline: str) -> list[str]:
    """Kendall tau of each label-free estimator with the headline over the rows (none without estimators)."""
    taus = df.attrs.get("estimator_tau") or []
    if not taus:
        return []
    items = "".join(f"<li><code>{escape(t['estimator'])}</code>: {escape(fmt_tau(t))}</li>" for t in taus)
    return [f"<h2>Label-free estimators vs {escape(headline)}</h2>",
            f'<p class="note">Kendall tau-b between each row\'s mean estimator (computed on the frozen features, '
            f"no labels) and its {escape(headline)} mean, over the n rows that have both.</p><ul>{items}</ul>"]


def render_html(df: pd.DataFrame, title: str, *, records: list[RunRecord] | None = None,
                record_href: dict[str, str] | None = None) -> str:
    """The whole page as one string (``title`` is the benchmark id)."""
    keys, headline = score_keys(df), headline_of(df)
    recs, hrefs = {r.run_id: r for r in records or []}, record_href or {}
    best = {k: df[f"{k}_mean"].max() for k in keys}
    cols = [("rank", "num"), ("method", "text"), ("backbone", "text"), ("recipe", "text"), ("config", "text"),
            *((k, "num") for k in keys), ("n", "num"), ("params", "num"), ("images seen", "num"),
            ("wall time", "num"), ("hardware", "text"), ("status", "text"), ("runs", "text")]
    head = "".join(f'<th data-type="{t}">{escape(c)}</th>' for c, t in cols)
    body = []
    for _, r in df.iterrows():
        cells = [_td("–" if pd.isna(r["rank"]) else r["rank"], r["rank"], "num"), _td(r.get("label") or r["method"]),
                 *(_td(r[c] or "–") for c in ("backbone", "recipe", "config"))]
        for k in keys:
            mean, ci = r[f"{k}_mean"], r[f"{k}_ci95"]
            is_best = not pd.isna(mean) and mean == best[k]
            cells.append(_td(fmt_pm(mean, r[f"{k}_std"]), mean, "num best" if is_best else "num",
                             f'<small class="ci">95% CI {escape(fmt_ci(ci))}</small>' if not pd.isna(ci) else ""))
        cells += [_td(r["n"], r["n"], "num"), _td(fmt_params(r["params"]), r["params"], "num"),
                  _td(fmt_count(r["images_seen"]), r["images_seen"], "num"),
                  _td(fmt_duration(r["wall_time_s"]), r["wall_time_s"], "num"),
                  _td(r["hardware"] or "–"), _td(r["status"]),
                  f"<td>{_runs(r['run_ids'], recs, hrefs, headline)}</td>"]
        cls = ' class="collapsed"' if str(r["status"]).startswith("collapsed") else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    note = (f"One row per (method, backbone, recipe, config); cells are mean ± std over n seeds with the 95% "
            f"confidence interval half-width t(0.975, n−1)·std/√n below (none for n = 1); best mean per "
            f"column in bold; ranked by {escape(headline)}. Failed runs are left out; collapsed runs are "
            f"highlighted. Click a column header to sort.")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)} leaderboard</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>", f'<p class="note">{note}</p>',
        f'<table class="lb" id="leaderboard"><thead><tr>{head}</tr></thead><tbody>',
        *body, "</tbody></table>",
        *([f'<p class="note">Errata (results/errata.yaml): {escape("; ".join(df.attrs["errata"]))}</p>']
          if df.attrs.get("errata") else []),
        *_estimator_section(df, headline),
        f'<h2>{escape(headline)} vs cost</h2><div class="plot">{plot_svg(df, headline)}</div>',
        f'<p class="note">Generated by <code>bench leaderboard {escape(title)} --format html</code> from the run '
        f"records linked above.</p>",
        f"<script>{_JS}</script>", "</body>", "</html>", ""])
