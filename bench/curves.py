"""Training curves of run folders: per-epoch loss, online-probe accuracy and the collapse monitors, read from
the Lightning CSV logs of every training segment (a resumed run logs each segment to its own
``logs/resumed-*/metrics.csv``), drawn one line per run on shared panels.

``bench curves RUN_DIR [RUN_DIR ...] --out curves.png`` (png, svg or pdf by the suffix)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.runs import metrics_logs

__all__ = ["CURVES", "load_curves", "plot_curves"]

#: panel title -> the epoch-level column Lightning's CSVLogger writes
CURVES = {"training loss": "train/loss_epoch", "online probe top-1 (%)": "online/acc_epoch",
          "effective rank": "monitor/effective_rank", "feature std": "monitor/feature_std"}


def load_curves(run_dir: str | Path) -> pd.DataFrame:
    """One row per epoch (index ``epoch``), one column per :data:`CURVES` entry found. Segments are read in the
    order they were written; when an epoch was logged by two segments (interrupted mid-epoch, then resumed)
    the later segment's value counts, and NaN cells never overwrite a value."""
    run_dir = Path(run_dir)
    paths = metrics_logs(run_dir)
    if not paths:
        raise BenchError(f"{run_dir} has no training logs (logs/**/metrics.csv): is it a run folder of `bench train`?")
    merged = pd.DataFrame()
    for path in paths:
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.EmptyDataError) as e:
            raise BenchError(f"cannot read {path}: {e}".splitlines()[0]) from None
        cols = [c for c in CURVES.values() if c in df.columns]
        if "epoch" not in df.columns or not cols:
            continue
        seg = df[["epoch", *cols]].dropna(subset=cols, how="all").groupby("epoch").last()
        merged = seg.combine_first(merged) if not merged.empty else seg
    return merged.sort_index()


def _label(run_dir: Path) -> str:
    try:
        info = json.loads((run_dir / "run.json").read_text())
        return f"{info.get('recipe') or info.get('method')} s{info['config'].get('seed')}"
    except (OSError, ValueError, KeyError):
        return run_dir.name


def plot_curves(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Draw every run's curves into ``out`` (its suffix picks the format); returns the path."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    from bench.io import atomic_write_bytes
    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise BenchError(f"--out {out}: give a .png, .svg or .pdf file")
    runs = [(Path(d), load_curves(d)) for d in run_dirs]
    panels = [(title, col) for title, col in CURVES.items() if any(col in df.columns for _, df in runs)]
    if not panels:
        raise BenchError("no epoch-level curves in these runs' logs (did an epoch finish?)")
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, col) in zip(axes, panels):
        for run_dir, df in runs:
            if col in df.columns:
                series = df[col].dropna()
                ax.plot(series.index + 1, series.values, marker="o", markersize=3, label=_label(run_dir))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if col == CURVES["training loss"] and all((df[col].dropna() > 0).all() for _, df in runs if col in df.columns):
            ax.set_yscale("log")  # methods' losses differ by orders of magnitude
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "ssl-bench"}):
        fig.savefig(buf, format=out.suffix.lower().lstrip("."), dpi=120)
    return atomic_write_bytes(out, buf.getvalue())
