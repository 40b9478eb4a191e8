"""saekit against a peer seed by seed: paired differences with Student's t intervals (issue 21).

Reads ``defaults_vs_peers.py`` outputs (one JSON file per run or per seed), takes the row of the
run named ``--ours`` and the row of the run named ``--peer`` at each seed (a file without a seed in
its settings is seed 0; where two files hold the same run at the same seed, the later file on the
command line wins), and prints, for FVU, MMCS and the dead fraction, each side's mean with its t
interval over seeds and the mean paired difference (ours - peer) with its interval. Paired by seed
means both runs saw the same batches in the same order, so the difference leaves out the batches'
share of the seed noise.

Run:  python benchmarks/seed_pairs.py benchmarks/out/s1[1-6]/dvp_*issue_row_10M*.json \
          --ours "saekit defaults" --peer "SAELens lr 0.001"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from saekit.pipeline.stats import mean_t_interval  # noqa: E402
from saekit.report.crosscoder import interval  # noqa: E402

METRICS = ("fvu", "mmcs", "dead_fraction")
BOUNDS = {"mmcs": (0.0, 1.0), "dead_fraction": (0.0, 1.0)}  # a side's interval stays where the value can be


def runs_by_seed(paths: list[str], name: str) -> dict[int, dict]:
    """{seed: row} of the run called ``name`` in these files (later files win)."""
    out: dict[int, dict] = {}
    for p in paths:
        doc = json.loads(Path(p).read_text())
        seed = doc.get("settings", {}).get("seed") or 0
        for row in doc.get("rows", []):
            if row.get("run") == name:
                out[int(seed)] = {**row, "file": p}
    return out


def paired_table(ours: dict[int, dict], peer: dict[int, dict], level: float) -> list[str]:
    """Markdown rows: per metric, ours, the peer, and ours - peer over the seeds both have."""
    seeds = sorted(set(ours) & set(peer))
    lines = [f"seeds paired: {seeds}", "", "| metric | ours: mean [t interval] | peer | ours - peer, paired | per seed |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for m in METRICS:
        a = [float(ours[s][m]) for s in seeds]
        b = [float(peer[s][m]) for s in seeds]
        diffs = [x - y for x, y in zip(a, b)]
        per_seed = ", ".join(f"{d:+.5f}" for d in diffs)
        side = [interval(mean_t_interval(v, level, BOUNDS.get(m)), 5) for v in (a, b)]
        lines.append(f"| {m} | {side[0]} | {side[1]} | "
                     f"{interval(mean_t_interval(diffs, level), 5)} | {per_seed} |")  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="defaults_vs_peers.py output files")
    ap.add_argument("--ours", default="saekit defaults", help="the run name of saekit's side")
    ap.add_argument("--peer", default="SAELens lr 0.001", help="the run name of the peer's side")
    ap.add_argument("--level", type=float, default=0.95)
    args = ap.parse_args()
    ours, peer = runs_by_seed(args.files, args.ours), runs_by_seed(args.files, args.peer)
    if not set(ours) & set(peer):
        sys.exit(
            f"no seed has both '{args.ours}' and '{args.peer}' in these files; seeds: {sorted(ours)} and {sorted(peer)}"
        )
    for seed in sorted(set(ours) | set(peer)):
        for side, rows in (("ours", ours), ("peer", peer)):
            if seed in rows:
                print(f"seed {seed} {side}: {rows[seed]['file']}")
    print("\n".join(["", *paired_table(ours, peer, args.level)]))


if __name__ == "__main__":
    main()
