"""Held-out quality of saekit's TopK loop, a baseline checkout against this one, over seeds: a
change to the loop that moves its numbers only by float rounding (e.g. a gradient summed in
another order) still sends each run along another path after the first top-k tie flips; this
says whether the end points differ by more than the seeds do. Same rows and batches as
loop_speed_interleaved.py (whose loops it reuses); runs in sparsify's venv like it:

    PYTHONPATH=. <sparsify venv>/bin/python benchmarks/loop_change_quality.py --cache benchmarks/out/lm/train \\
        --val-cache benchmarks/out/lm/val --baseline <checkout> --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop_speed_interleaved import SaekitLoop, _saekit_kernels, baseline_loop  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--val-cache", required=True)
    ap.add_argument("--baseline", required=True, help="another checkout's folder (its saekit/ and kernels/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n-latents", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _saekit_kernels()
    from saekit.activations import ActivationCache

    X = ActivationCache(args.cache).read_all().float()
    Xv = ActivationCache(args.val_cache).read_all().float()[:20_000]
    X = X[torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))]
    steps = args.tokens // args.batch
    shape = (X, args.n_latents, args.k, args.batch, steps)
    rows = []
    for seed in args.seeds:
        loops = {
            "baseline": baseline_loop(Path(args.baseline).resolve(), *shape, seed=seed),
            "this checkout": SaekitLoop(*shape, dense_auxk=False, seed=seed),
        }
        for name, loop in loops.items():
            for i in range(steps):
                loop.step(i)
            xhat, dead = loop.evaluate(Xv)
            fvu = float((xhat - Xv).pow(2).sum() / (Xv - Xv.mean(0)).pow(2).sum())
            rows.append({"run": name, "seed": seed, "fvu": fvu, "dead_fraction": dead})
            print(json.dumps(rows[-1]), flush=True)
    for name in ("baseline", "this checkout"):
        mine = [r for r in rows if r["run"] == name]
        fvus, deads = [r["fvu"] for r in mine], [r["dead_fraction"] for r in mine]
        spread = statistics.stdev(fvus) if len(fvus) > 1 else 0.0
        print(
            f"{name}: FVU {statistics.mean(fvus):.5f} ± {spread:.5f} (sd over {len(fvus)} seeds), "
            f"dead {statistics.mean(deads):.4f} (min {min(deads):.4f}, max {max(deads):.4f})"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "settings": vars(args), "rows": rows},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
