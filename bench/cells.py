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


#: LaTeX accent commands of the Unicode combining marks (NFD): ``é`` = ``e`` + U+0301 -> ``\\'{e}``
_ACCENTS = {"\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u", "\u0307": ".",
            "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0327": "c", "\u0328": "k"}
#: letters and signs without a decomposition that pdflatex's text or math fonts have
_TEX_SYMBOLS = {"ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "ø": r"\o{}", "Ø": r"\O{}", "œ": r"\oe{}", "Œ": r"\OE{}",
                "ł": r"\l{}", "Ł": r"\L{}", "ı": r"\i{}", "đ": r"\dj{}", "Đ": r"\DJ{}", "þ": r"\th{}", "Þ": r"\TH{}",
                "ð": r"\dh{}", "Ð": r"\DH{}", "¿": r"?`", "¡": r"!`", "«": r"\guillemotleft{}",
                "»": r"\guillemotright{}", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "…": r"\ldots{}",
                "°": r"\textdegree{}", "×": r"$\times$", "·": r"$\cdot$", "≤": r"$\leq$", "≥": r"$\geq$",
                "→": r"$\rightarrow$", "←": r"$\leftarrow$", "µ": r"$\mu$", "\u00a0": "~"}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu",
          "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"}


def _tex_char(c: str) -> str:
    """One non-ASCII character as pdflatex (T1 fonts, no extra packages) typesets it: an accented letter with its
    accent command, a known letter or sign by name, a Greek letter in math mode; anything else (CJK, emoji, ...)
    as its code point ``[U+4E2D]``, so the document always compiles and the name stays recognisable."""
    import unicodedata
    if c in _TEX_SYMBOLS:
        return _TEX_SYMBOLS[c]
    base, *marks = unicodedata.normalize("NFD", c)
    if marks and base.isascii() and all(m in _ACCENTS for m in marks):
        out = r"\i{}" if base == "i" else base
        for m in marks:
            out = f"\\{_ACCENTS[m]}{{{out}}}"
        return out
    name = unicodedata.name(c, "").split()
    if name[:2] == ["GREEK", "SMALL"] and len(name) == 4 and name[3].lower().replace("lamda", "lambda") in _GREEK:
        return f"$\\{name[3].lower().replace('lamda', 'lambda')}$"
    if name[:2] == ["GREEK", "CAPITAL"] and len(name) == 4:
        letter = name[3].capitalize().replace("Lamda", "Lambda")
        if letter in ("Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"):
            return f"$\\{letter}$"
    return f"[U+{ord(c):04X}]"


def tex_escape(s: str) -> str:
    """Text as LaTeX source that pdflatex compiles: the special characters escaped, every non-ASCII character
    spelled in ASCII (:func:`_tex_char`)."""
    return "".join(_TEX.get(c) or (c if c.isascii() else _tex_char(c)) for c in str(s))


def tex_document(body: str) -> str:
    """Wrap a ``table`` (or ``tabular``) in a document pdflatex compiles with texlive-latex-base +
    texlive-latex-recommended (article, landscape, booktabs, graphicx)."""
    return "\n".join([r"\documentclass{article}", r"\usepackage[T1]{fontenc}",
                      r"\usepackage[landscape,margin=1cm]{geometry}", r"\usepackage{booktabs}",
                      r"\usepackage{graphicx}",
                      r"\pagestyle{empty}", r"\begin{document}", body.rstrip("\n"), r"\end{document}", ""])
