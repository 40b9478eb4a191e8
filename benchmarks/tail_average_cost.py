"""What tail averaging costs per step: two trainers on the same batches in ONE process, one averaging
every step (``tail_average=1``) and one never (``0``), timed in interleaved chunks of steps so that a
loaded machine slows both alike. Issue 21's synthetic shape by default (4096 latents, k 32, 128-d,
batch 4096). Prints the time per step of each and their ratio.

Run:  PYTHONPATH=.:tests python benchmarks/tail_average_cost.py [--steps 200] [--chunk 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import planted_rows  # noqa: E402

from saekit.config import DictionaryConfig, TrainConfig  # noqa: E402
from saekit.training import TensorSource, Trainer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--n-latents", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X, _, _ = planted_rows(200_000, 1, d=args.d, n_features=1024)
    cfg = DictionaryConfig(kind="topk", d_in=args.d, n_latents=args.n_latents, k=args.k)
    trainers, spent = {}, {}
    for tail in (0.0, 1.0):
        tcfg = TrainConfig(batch_size=args.batch, total_tokens=args.batch * args.steps, device="cpu", log_every=0,
                           tail_average=tail)
        trainers[tail] = Trainer(cfg, TensorSource(X, shuffle=False), tcfg, progress=False)
        spent[tail] = 0.0
    for _ in range(0, args.steps, args.chunk):
        for tail, tr in trainers.items():
            t0 = time.perf_counter()
            for _ in range(args.chunk):
                tr.step(*tr.next_batch())
            spent[tail] += time.perf_counter() - t0
    per_step = {f"tail {t:g}": s / args.steps * 1e3 for t, s in spent.items()}
    print(json.dumps({"ms_per_step": per_step, "ratio_averaging_to_not": spent[1.0] / spent[0.0],
                      "averaged_steps": trainers[1.0].runs[0].average.count, "settings": vars(args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
