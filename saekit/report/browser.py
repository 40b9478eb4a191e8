"""Check a report in a real headless browser (Debian `chromium`) and take its screenshot.

    python -m saekit.report.browser runs/demo/report.html docs/report.png

prints how many images decoded and writes the screenshot. No network is used: the report is
self-contained and chromium runs with its background networking off.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from saekit.errors import DataError

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def find_chromium() -> str | None:
    """Path of a chromium/chrome binary, or None."""
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> str:
    binary = find_chromium()
    if binary is None:
        raise DataError("no chromium binary found; install it (Debian: apt-get install -y chromium).")
    with tempfile.TemporaryDirectory(prefix="saekit-chromium-") as profile:
        proc = subprocess.run(
            [binary, *_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise DataError(f"chromium exited with status {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def images_loaded(html_path: str | Path, timeout: float = 120) -> tuple[int, int]:
    """(images decoded, images on the page) as the report's own load script counts them in chromium."""
    url = Path(html_path).resolve().as_uri()
    dom = _run(["--virtual-time-budget=10000", "--dump-dom", url], timeout)
    m = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    if m is None:
        raise DataError(f"the page {html_path} did not finish loading in chromium (no data-images-loaded mark).")
    return int(m.group(1)), int(m.group(2))


def screenshot(
    html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 2400, timeout: float = 120
) -> Path:
    """Render ``html_path`` in headless chromium and save a PNG of the first ``height`` pixels."""
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.tmp.png")
    url = Path(html_path).resolve().as_uri()
    _run(
        [f"--window-size={width},{height}", "--virtual-time-budget=10000", f"--screenshot={tmp}", url],
        timeout,
    )
    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise DataError(f"chromium wrote no screenshot for {html_path}.")
    tmp.replace(png)  # atomic: a half-written PNG never takes the final name
    return png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check a saekit report in headless chromium and screenshot it.")
    p.add_argument("report", help="report.html")
    p.add_argument("png", nargs="?", help="where to save the screenshot (e.g. docs/report.png)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2400)
    a = p.parse_args(argv)
    try:
        ok, total = images_loaded(a.report)
        print(f"{a.report}: {ok}/{total} images loaded")
        if a.png:
            print(f"screenshot: {screenshot(a.report, a.png, a.width, a.height)}")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if ok == total and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
