"""OUTDIR/summary.md from OUTDIR/results.jsonl: how each stage ended, then one table per stage."""

from __future__ import annotations

import json
from pathlib import Path

# stage -> columns shown (whatever a record lacks is left blank)
COLUMNS = {
    "install": ["status", "note"],
    "tests": ["status", "cuda", "counts", "failed", "note"],
    "decode": ["dtype", "B", "n", "k", "impl", "ms", "ms_min", "peak_mb", "gbs", "bw_fraction", "error", "status"],
    "encode": ["dtype", "B", "n", "k", "impl", "ms", "ms_min", "peak_mb", "error", "status"],
    "train_step": ["backend", "ms", "vs_dense", "d", "n", "k", "B", "device"],
    "peer_step": ["framework", "ms", "ms_min", "tokens_per_s", "d", "n", "k", "batch", "device", "error", "status"],
    "e2e": ["device", "d_model", "tokens", "seconds", "tokens_per_s", "wait_fraction", "status"],
    "nccl": ["mode", "wall_s_per_step", "tokens_per_s", "vs_one_process", "status", "error"],
}


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v).replace("|", "/").replace("\n", " ")


def _table(cols: list[str], rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return lines + ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]


def write_summary(out: Path) -> Path:
    path = out / "results.jsonl"
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    ends = [r for r in recs if r["stage"] == "stage_end"]
    md = ["# saekit GPU run", "", "How each stage ended (each has its own time cap):", ""]
    md += _table(["name", "status", "seconds", "cap_s"], ends)
    for stage, cols in COLUMNS.items():
        rows = [r for r in recs if r["stage"] == stage]
        md += ["", f"## {stage}", ""]
        md += _table(cols, rows) if rows else ["no record (the stage did not run or was cut by its cap)"]
    target = out / "summary.md"
    target.write_text("\n".join(md) + "\n", encoding="utf-8")
    return target
