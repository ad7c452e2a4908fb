"""Cell formatting shared by the leaderboard files (bench.leaderboard, bench.leaderboard_html) and paper tables
(bench.tables): scores as ``mean ± std``, counts, durations, parameter counts, LaTeX escaping."""

from __future__ import annotations

import pandas as pd

__all__ = ["fmt_ci", "fmt_count", "fmt_duration", "fmt_params", "fmt_pm", "fmt_tau", "headline_of", "score_keys",
           "tex_document", "tex_escape"]


def score_keys(df: pd.DataFrame) -> list[str]:
    """The score names of a built leaderboard, headline first."""
    return [c[:-5] for c in df.columns if c.endswith("_mean")]


def headline_of(df: pd.DataFrame) -> str:
    keys = score_keys(df)
    return df.attrs.get("headline") or (keys[0] if keys else "linear_top1")


def fmt_pm(mean: float, std: float, pm: str = " ± ", digits: int = 1) -> str:
    """``72.0 ± 2.0``; ``75.0`` when std is NaN (one seed); ``–`` when there is no score."""
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f}{pm}{std:.{digits}f}"


def fmt_ci(h: float, digits: int = 1) -> str:
    return "–" if pd.isna(h) else f"±{h:.{digits}f}"


def fmt_params(p: float) -> str:
    """``11.2M`` / ``850k``; ``–`` when unknown."""
    if pd.isna(p):
        return "–"
    return f"{p / 1e6:.1f}M" if p >= 1e6 else f"{p / 1e3:.0f}k"


def fmt_duration(s: float) -> str:
    """``45 s``, ``32 min``, ``1.5 h``."""
    if pd.isna(s):
        return "–"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def fmt_tau(entry: dict) -> str:
    """A rank correlation ``{tau, n, p}``: ``tau +0.47 (n=6, p=0.27)``; ``tau – (n=1)`` where it is undefined."""
    tau = "–" if pd.isna(entry["tau"]) else f"{entry['tau']:+.2f}"
    p = f", p={entry['p']:.2g}" if entry.get("p") is not None else ""
    return f"tau {tau} (n={entry['n']}{p})"


def fmt_count(x: float) -> str:
    return "–" if pd.isna(x) else f"{x:,.0f}"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "±": r"$\pm$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(c, c) for c in str(s))


def tex_document(body: str) -> str:
    """Wrap a ``table`` (or ``tabular``) in a document pdflatex compiles with texlive-latex-base +
    texlive-latex-recommended (article, landscape, booktabs, graphicx)."""
    return "\n".join([r"\documentclass{article}", r"\usepackage[T1]{fontenc}",
                      r"\usepackage[landscape,margin=1cm]{geometry}", r"\usepackage{booktabs}",
                      r"\usepackage{graphicx}",
                      r"\pagestyle{empty}", r"\begin{document}", body.rstrip("\n"), r"\end{document}", ""])
