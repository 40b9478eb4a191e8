"""The one line a training run ends with: what was trained, how well, how fast, where it is."""

from __future__ import annotations

from pathlib import Path


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if lo == hi else f"{format(lo, fmt)}-{format(hi, fmt)}"


def summary_line(records: list[dict], n_dicts: int, tokens: int, seconds: float, out_dir: Path | None) -> str:
    """'trained 1 dictionary on 6,400 tokens in 1.2 s (5,333 tok/s): FVU 0.123, L0 4.0, dead 0.0%;
    saved in run' from the last metrics record of each dictionary (ranges over a sweep)."""
    last: dict[str, dict] = {}
    for r in records:
        last[r.get("dict", "")] = r
    what = f"{n_dicts} dictionar{'y' if n_dicts == 1 else 'ies'}"
    line = f"trained {what} on {tokens:,} tokens in {seconds:.1f} s ({tokens / max(seconds, 1e-9):,.0f} tok/s)"
    if last:
        fvu = [r["fvu"] for r in last.values()]
        l0 = [r["l0"] for r in last.values()]
        dead = [100 * r["dead_fraction"] for r in last.values()]
        line += f": FVU {_span(fvu, '.3f')}, L0 {_span(l0, '.1f')}, dead {_span(dead, '.1f')}%"
    if out_dir is not None:
        line += f"; saved in {out_dir}"
    return line
