#!/usr/bin/env python3
"""Screenshot a static page (e.g. ``leaderboards/<id>/leaderboard.html``) with headless Chromium.

    python scripts/screenshot_leaderboard.py leaderboards/imagenette64-v1/leaderboard.html shot.png [--expand]

Uses the first of ``chromium``, ``chromium-browser``, ``google-chrome`` found on PATH (Debian:
``apt-get install -y chromium``); exits with code 2 and says so when none is installed. The page's size is
measured first (``--dump-dom`` of a temporary copy that writes its scroll size into the DOM) so the whole
page fits the shot; nothing is fetched from the network."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def find_browser() -> str | None:
    return next((path for b in BROWSERS if (path := shutil.which(b))), None)


def _chrome(browser: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:  # a throw-away profile: no state, no first-run dialogs
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def page_size(browser: str, url: str, width: int) -> tuple[int, int]:
    """(width, height) a page at ``url`` wrote into ``<html data-size="W,H">`` on load ((width, 1200) if none)."""
    probe = _chrome(browser, f"--window-size={width},800", "--virtual-time-budget=2000",
                    "--run-all-compositor-stages-before-draw", "--dump-dom", url)
    m = re.search(r'data-size="(\d+),(\d+)"', probe.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (width, 1200)


def _copy(html: Path, extra_script: str, expand: bool) -> Path:
    """A temporary copy of the page (beside it, so relative links still resolve) with a script appended and,
    with ``expand``, every ``<details>`` block open."""
    text = html.read_text(encoding="utf-8")
    if expand:
        text = text.replace("<details>", "<details open>")
    text = text.replace("</body>", f"<script>{extra_script}</script></body>", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=html.parent, prefix=".shot-", delete=False,
                                     encoding="utf-8") as f:
        f.write(text)
    return Path(f.name)


def screenshot(html: Path, out: Path, width: int = 1500, height: int | None = None, expand: bool = False) -> Path:
    """Render ``html`` at ``width`` (widened to the page's own width) and its full height into ``out`` (PNG)."""
    browser = find_browser()
    if browser is None:
        _fail("no Chromium found on PATH (tried " + ", ".join(BROWSERS) + "); install it, "
              "e.g. `apt-get install -y chromium`, then run this again")
    if not html.is_file():
        _fail(f"{html} does not exist (write it with `bench leaderboard ID --format html`)")
    measure = ("window.addEventListener('load',()=>{const e=document.documentElement;"
               "e.setAttribute('data-size',Math.ceil(e.scrollWidth)+','+Math.ceil(e.scrollHeight))})")
    page = _copy(html, measure, expand)
    try:
        w, h = page_size(browser, page.as_uri(), width)
        width, height = max(width, w), min(height or h + 24, 16000)
        out.parent.mkdir(parents=True, exist_ok=True)
        res = _chrome(browser, f"--window-size={width},{height}", "--run-all-compositor-stages-before-draw",
                      "--virtual-time-budget=2000", f"--screenshot={out.resolve()}",
                      page.as_uri() if expand else html.resolve().as_uri())
    finally:
        page.unlink(missing_ok=True)
    if res.returncode != 0 or not out.is_file():
        _fail(f"{browser} could not take the screenshot (exit {res.returncode}): "
              f"{(res.stderr.strip().splitlines() or [''])[-1]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path, help="the page to render, e.g. leaderboards/imagenette64-v1/leaderboard.html")
    ap.add_argument("out", type=Path, help="PNG to write")
    ap.add_argument("--width", type=int, default=1500, help="viewport width in pixels")
    ap.add_argument("--height", type=int, default=None, help="viewport height (default: the page's full height)")
    ap.add_argument("--expand", action="store_true", help="open every <details> block (per-run details) first")
    args = ap.parse_args(argv)
    print(f"wrote {screenshot(args.html, args.out, args.width, args.height, args.expand)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
