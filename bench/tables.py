"""Paper tables: ``bench table SPEC.yaml`` turns leaderboards into the table a paper shows.

A spec (YAML, validated by pydantic; a misspelt key is an error with a "did you mean") picks benchmark ids,
score columns, method rows (with display names) and optional cost columns::

    benchmarks: [imagenette64-v1]
    scores: [knn_top1, linear_top1, attentive_top1]
    methods:
      - {method: simclr, name: SimCLR}
      - {method: random, backbone: resnet18, name: random init}   # backbone / recipe / config pick one setup
    columns: [params, images_seen]
    caption: Frozen-encoder accuracy (%) on Imagenette at 32 px.
    label: tab:imagenette
    formats: [tex, md]
    output: tables/imagenette64       # + .tex / .md

A suite id in ``benchmarks`` (e.g. ``transfer-v1``) gives a column group per dataset of the suite plus its mean and
average rank (the suite leaderboard's, :mod:`bench.suite_leaderboard`). Cells are the leaderboard's numbers (``bench.leaderboard.leaderboard_from_results``, nothing re-aggregated):
``mean ± std`` over seeds (``mean`` alone for one seed, ``–`` when the method has no run on that benchmark);
the best mean of every (benchmark, score) column is bold. Rows keep the spec's order."""

from __future__ import annotations

import os
from difflib import get_close_matches
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import BenchError, ConfigError
from bench.io import atomic_write_text
from bench.cells import fmt_count, fmt_duration, fmt_params, fmt_pm, score_keys, tex_document, tex_escape
from bench.leaderboard import leaderboard_from_results

__all__ = ["MethodRow", "TableSpec", "build_table", "load_table_spec", "render_table", "write_table"]

Column = Literal["params", "images_seen", "wall_time", "hardware", "n"]
_COLUMN_LABEL = {"params": "params", "images_seen": "images seen", "wall_time": "wall time", "hardware": "hardware",
                 "n": "seeds"}
_COLUMN_SOURCE = {"params": "params", "images_seen": "images_seen", "wall_time": "wall_time_s",
                  "hardware": "hardware", "n": "n"}
_PROBE_LABEL = {"knn": "k-NN", "linear": "linear", "attentive": "attentive"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MethodRow(_Strict):
    """One table row: the leaderboard row of ``method`` (narrowed by backbone / recipe / config hash prefix)."""
    method: str
    name: str | None = None
    backbone: str | None = None
    recipe: str | None = None
    config: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.method


class TableSpec(_Strict):
    benchmarks: list[str] = Field(min_length=1)
    scores: list[str] = Field(default=["knn_top1", "linear_top1"], min_length=1)
    methods: list[MethodRow] = Field(min_length=1)
    columns: list[Column] = []
    caption: str | None = None
    label: str | None = None
    formats: list[Literal["tex", "md"]] = Field(default=["tex"], min_length=1)
    output: str | None = None  # path without extension; None: print only
    results: str = "results"
    standalone: bool = False  # tex: a compilable document instead of a table to \input
    digits: int = Field(default=1, ge=0, le=4)

    @field_validator("methods", mode="before")
    @classmethod
    def _names(cls, v):  # a bare string is a method name
        return [{"method": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    @field_validator("benchmarks", "scores", "formats", "columns", mode="before")
    @classmethod
    def _one(cls, v):  # `formats: tex` means [tex]
        return [v] if isinstance(v, str) else v

    @field_validator("benchmarks", "scores", "formats", "columns")
    @classmethod
    def _unique(cls, v: list) -> list:
        twice = sorted({x for x in v if v.count(x) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(map(str, twice))} more than once")
        return v


def _spec_error(e: ValidationError, where: str) -> ConfigError:
    err = e.errors()[0]
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "extra_forbidden":
        model = MethodRow if loc[0] == "methods" else TableSpec
        key, known = loc[-1], list(model.model_fields)
        hint = get_close_matches(key, known, n=1)
        inside = f" in {'.'.join(loc[:-1])}" if len(loc) > 1 else ""
        return ConfigError(f"unknown key {key!r}{inside} of table spec {where}"
                           + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; known: {', '.join(known)}")
    return ConfigError(f"bad value for {'.'.join(loc) or 'spec'!r} in table spec {where}: {err['msg']}"
                       + (f" (got {err['input']!r})" if err["type"] != "missing" else ""))


def load_table_spec(path: str | os.PathLike) -> TableSpec:
    """Read and validate a spec; any problem is one ConfigError naming the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read table spec {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"table spec {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"table spec {path} must be a mapping (benchmarks, scores, methods, ...), "
                          f"got {type(data).__name__}")
    try:
        return TableSpec.model_validate(data)
    except ValidationError as e:
        raise _spec_error(e, str(path)) from None


def _leaderboards(spec: TableSpec, results: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Each benchmark's leaderboard; a suite id gives one per benchmark of the suite plus its mean and average rank
    (:func:`bench.suite_leaderboard.suite_boards`)."""
    from bench.benchmarks import get_benchmark  # unknown id: get_benchmark's ConfigError
    from bench.benchmarks.suites import is_suite
    boards = {}
    for name in spec.benchmarks:
        if is_suite(name):
            from bench.suite_leaderboard import suite_boards, suite_leaderboard_from_results
            board = suite_leaderboard_from_results(name, results)
            if board.empty:
                raise BenchError(f"no records of any {name} benchmark in {results} (table spec benchmarks)")
            boards.update(suite_boards(board))
            continue
        bench = get_benchmark(name)
        board, _, _ = leaderboard_from_results(bench, results)
        if board.empty:
            raise BenchError(f"no records for {bench.id} in {Path(results) / bench.id} (table spec benchmarks)")
        boards[bench.id] = board
    return boards


def _pick(board: pd.DataFrame, row: MethodRow, bench_id: str) -> pd.Series | None:
    m = board[board["method"] == row.method]
    for key in ("backbone", "recipe"):
        if getattr(row, key) is not None:
            m = m[m[key] == getattr(row, key)]
    if row.config is not None:
        m = m[m["config"].str.startswith(row.config)]
    if len(m) > 1:
        setups = "; ".join(f"backbone {r.backbone}, recipe {r.recipe}, config {r.config}" for r in m.itertuples())
        raise ConfigError(f"method {row.method!r} has {len(m)} setups on {bench_id} ({setups}); add backbone:, "
                          f"recipe: or config: to its row in the table spec to pick one")
    return None if m.empty else m.iloc[0]


def build_table(spec: TableSpec, results: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rows: the spec's methods (display names, spec order). Columns: a MultiIndex ``(benchmark id, key)``
    with keys ``<score>_mean``, ``<score>_std`` and the cost columns, copied from the leaderboards."""
    boards = _leaderboards(spec, results or spec.results)
    available = sorted({k for b in boards.values() for k in score_keys(b)})
    for s in spec.scores:
        if s not in available:
            hint = get_close_matches(s, available, n=1)
            raise ConfigError(f"unknown score {s!r} in table spec" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; the records have: {', '.join(available)}")
    out: dict[tuple[str, str], list] = {}
    found = {r.method: False for r in spec.methods}
    for bid, board in boards.items():
        picked = [_pick(board, r, bid) for r in spec.methods]
        for r, p in zip(spec.methods, picked):
            found[r.method] |= p is not None
        for s in spec.scores:
            for stat in ("mean", "std"):
                out[(bid, f"{s}_{stat}")] = [p[f"{s}_{stat}"] if p is not None else float("nan") for p in picked]
        for c in spec.columns:
            out[(bid, c)] = [p.get(_COLUMN_SOURCE[c]) if p is not None else None for p in picked]
    missing = [m for m, ok in found.items() if not ok]
    if missing:
        have = sorted({m for b in boards.values() for m in b["method"]})
        hint = get_close_matches(missing[0], have, n=1)
        raise ConfigError(f"method {missing[0]!r} in the table spec has no records on {', '.join(boards)}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; methods with records: "
                          + ", ".join(have))
    df = pd.DataFrame(out, index=[r.label for r in spec.methods])
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    df.attrs["lower_is_better"] = [bid for bid, board in boards.items() if board.attrs.get("lower_is_better")]
    return df


def _label(key: str) -> str:
    """``knn_top1`` -> ``k-NN top-1``; cost columns by name."""
    if key in _COLUMN_LABEL:
        return _COLUMN_LABEL[key]
    probe, _, rest = key.partition("_")
    return f"{_PROBE_LABEL.get(probe, probe)} {rest.replace('top', 'top-')}" if rest.startswith("top") else key


def _grid(df: pd.DataFrame, spec: TableSpec, cell) -> tuple[list[tuple[str, list[str]]], list[list[str]]]:
    """Header groups [(benchmark, [labels])] and rows [name, cells...]; ``cell(text, best)`` formats a cell."""
    groups, rows = [], [[cell(name, False)] for name in df.index]
    for bid in dict.fromkeys(df.columns.get_level_values(0)):
        groups.append((bid, [_label(s) for s in spec.scores] + [_label(c) for c in spec.columns]))
        for s in spec.scores:
            means, stds = df[(bid, f"{s}_mean")], df[(bid, f"{s}_std")]
            best = means.min() if bid in df.attrs.get("lower_is_better", ()) else means.max()  # ranks: 1 is best
            for cells, mean, std in zip(rows, means, stds):
                cells.append(cell(fmt_pm(mean, std, digits=spec.digits), not pd.isna(mean) and mean == best))
        for c in spec.columns:
            fmt = {"params": fmt_params, "images_seen": fmt_count, "wall_time": fmt_duration,
                   "n": lambda v: "–" if pd.isna(v) else str(int(v))}.get(c, lambda v: v or "–")
            for cells, v in zip(rows, df[(bid, c)]):
                cells.append(cell(fmt(v), False))
    return groups, rows


def _md_cell(text: str, best: bool) -> str:
    return f"**{text}**" if best else text


def _tex_cell(text: str, best: bool) -> str:
    return rf"\textbf{{{tex_escape(text)}}}" if best else tex_escape(text)


def render_table(df: pd.DataFrame, spec: TableSpec, fmt: str) -> str:
    """``tex`` (booktabs table with caption/label, ``$\\pm$``, best bold; a benchmark header row with
    ``\\cmidrule`` when there are several) or ``md`` (``**best**``, caption as a pandoc ``Table:`` line)."""
    if fmt == "md":
        groups, rows = _grid(df, spec, _md_cell)
        many = len(groups) > 1
        header = ["method"] + [f"{bid} {lab}" if many else lab for bid, labs in groups for lab in labs]
        lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        if spec.caption:
            lines += ["", f"Table: {spec.caption}"]
        return "\n".join(lines) + "\n"
    if fmt != "tex":
        raise ConfigError(f"unknown table format {fmt!r}; known: tex, md")
    groups, rows = _grid(df, spec, _tex_cell)
    lines = [r"\begin{table}[t]", r"\centering"]
    if spec.caption:
        lines.append(rf"\caption{{{tex_escape(spec.caption)}}}")
    if spec.label:
        lines.append(rf"\label{{{spec.label}}}")
    lines += [r"\begin{tabular}{l" + "".join("r" * len(labs) for _, labs in groups) + "}", r"\toprule"]
    if len(groups) > 1:
        lines.append(" & " + " & ".join(rf"\multicolumn{{{len(labs)}}}{{c}}{{{tex_escape(bid)}}}"
                                        for bid, labs in groups) + r" \\")
        start, rules = 2, []
        for _, labs in groups:
            rules.append(rf"\cmidrule(lr){{{start}-{start + len(labs) - 1}}}")
            start += len(labs)
        lines.append(" ".join(rules))
    lines += ["method & " + " & ".join(tex_escape(lab) for _, labs in groups for lab in labs) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    text = "\n".join(lines) + "\n"
    return tex_document(text) if spec.standalone else text


def write_table(spec: TableSpec, *, results: str | os.PathLike | None = None,
                output: str | os.PathLike | None = None) -> tuple[dict[str, str], list[Path]]:
    """Build and render the table in every format of the spec and, when there is an output path (argument,
    else the spec's ``output``), write ``<output>.<fmt>`` atomically. Returns ({format: text}, written paths)."""
    df = build_table(spec, results)
    texts = {fmt: render_table(df, spec, fmt) for fmt in spec.formats}
    out = output or spec.output
    if out is None:
        return texts, []
    stem = Path(out).with_suffix("") if Path(out).suffix in (".tex", ".md") else Path(out)
    return texts, [atomic_write_text(stem.parent / f"{stem.name}.{fmt}", text) for fmt, text in texts.items()]
