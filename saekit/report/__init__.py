"""saekit.report: a self-contained HTML report (embedded matplotlib PNGs) from comparison results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.fileutil import atomic_write_text, read_json


def write_report(
    results: dict[str, Any] | str | Path, path: str | Path, run_dir: str | Path | None = None
) -> Path:
    """Write the HTML report of ``results`` (a dict, or a results.json path) to ``path``.

    run_dir: the run folder that paths in ``results`` (e.g. feature browsers) resolve against; default
    the results.json's folder, or the report's own folder for a dict."""
    from saekit.report.html import render_html

    if not isinstance(results, dict):
        run_dir = run_dir if run_dir is not None else Path(results).parent
        results = read_json(results, "comparison results")
    run_dir = Path(run_dir) if run_dir is not None else Path(path).parent
    return atomic_write_text(path, render_html(results, links_from=_rel(run_dir, Path(path).parent)))


def _rel(run_dir: Path, report_dir: Path) -> str:
    """The run folder as seen from the report's folder ("" when they are the same), with a trailing /."""
    import os

    rel = Path(os.path.relpath(run_dir.resolve(), report_dir.resolve())).as_posix()
    return "" if rel == "." else rel + "/"


__all__ = ["write_report"]
