"""What the ``bench`` commands print: rich on a terminal, plain text when stdout is a pipe or a file.

On a terminal tables are rich tables and lines may carry a style. Otherwise (``bench benchmarks | cat``, a log
file, a SLURM job) the output is plain: tables are space-aligned rows as wide as their longest cell, nothing is
wrapped or truncated, and a command a user may paste stays on one line. Messages never go through rich markup,
so text in brackets (``[ok]``, ``[resnet18]``) prints as written. Warnings are one ``warning: ...`` line on stderr.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

__all__ = ["is_terminal", "out", "print_table", "rule", "warn", "one_line_warnings"]


def _console() -> Console:
    # made per call: rich resolves sys.stdout when it writes, and soft_wrap never breaks a line by itself
    return Console(soft_wrap=True)


def is_terminal() -> bool:
    """Whether stdout is an interactive terminal (rich's test: honours FORCE_TERMINAL / TTY_COMPATIBLE)."""
    return _console().is_terminal


def out(text: str = "", *, style: str | None = None) -> None:
    """One message on stdout, as written (no markup, never wrapped); ``style`` (e.g. ``"dim"``) on a terminal."""
    _console().print(text, style=style, markup=False, highlight=False)


def _plain(cell) -> str:
    return Text.from_markup(str(cell)).plain


def print_table(headers: Sequence[str], rows: Sequence[Sequence], *, title: str | None = None) -> None:
    """A rich table on a terminal; otherwise the title, then header and rows as columns separated by two
    spaces, each as wide as its longest cell (cells are rich markup: ``[green]ok[/]`` prints ``ok``)."""
    if is_terminal():
        from rich.table import Table
        table = Table(*headers, title=title, title_justify="left")
        for row in rows:
            table.add_row(*(str(c) for c in row))
        _console().print(table)
        return
    lines = [[_plain(h) for h in headers], *([_plain(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    if title:
        print(_plain(title))
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def rule(title: str) -> None:
    """A section heading: a rich rule across a terminal, ``== title ==`` otherwise."""
    if is_terminal():
        _console().rule(Text(title))
    else:
        print(f"== {title} ==")


def _one_line(message) -> str:
    return " ".join(str(message).split())


def warn(message: str) -> None:
    """``warning: message`` as one line on stderr."""
    print(f"warning: {_one_line(message)}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    warn(message)


def one_line_warnings() -> None:
    """Python warnings shown from now on (the library's collapse and precision warnings, Lightning's) print
    through :func:`warn`: one ``warning: ...`` line, without file, line number and source line. The filters
    still decide which are shown; ``warnings.catch_warnings(record=True)`` still records them."""
    warnings.showwarning = _show_warning
