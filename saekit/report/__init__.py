"""saekit.report: a self-contained HTML report (embedded matplotlib PNGs) from comparison results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.fileutil import atomic_write_text, read_json


def write_report(results: dict[str, Any] | str | Path, path: str | Path) -> Path:
    """Write the HTML report of ``results`` (a dict, or a results.json path) to ``path``."""
    from saekit.report.html import render_html

    if not isinstance(results, dict):
        results = read_json(results, "comparison results")
    return atomic_write_text(path, render_html(results))


__all__ = ["write_report"]
