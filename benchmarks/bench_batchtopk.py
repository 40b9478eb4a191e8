"""BatchTopK vs TopK training speed, side by side on one machine (issue 18).

Both train on the same random batches (256-d, 4096 latents, k = 32, batch 4096 by default);
the runs alternate (topk, batchtopk, topk, ...) so a change in machine load hits both alike.
Reports rows/s per kind (median over the repeats) after ``--warmup`` untimed steps.

Run: .venv/bin/python benchmarks/bench_batchtopk.py [--steps 10 --repeats 3 --device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from saekit import DictionaryConfig, TrainConfig
from saekit.training import Trainer


def rows_per_s(kind: str, x: torch.Tensor, args) -> float:
    cfg = DictionaryConfig(kind=kind, d_in=args.d, n_latents=args.n, k=args.k)
    tcfg = TrainConfig(batch_size=args.batch, total_tokens=args.batch * 10_000, lr=1e-3, device=args.device, log_every=10**9)
    t = Trainer(cfg, x, tcfg, progress=False)
    for _ in range(args.warmup):
        t.step(*t.next_batch())
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        t.step(*t.next_batch())
    sync()
    return args.steps * args.batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    x = torch.randn(args.rows, args.d, generator=torch.Generator().manual_seed(0))
    res: dict[str, list[float]] = {"topk": [], "batchtopk": []}
    for _ in range(args.repeats):
        for kind in res:
            res[kind].append(rows_per_s(kind, x, args))
    for kind, v in res.items():
        print(f"{kind:10} {statistics.median(v):10.0f} rows/s  (runs: {', '.join(f'{r:.0f}' for r in v)})")
    print(f"batchtopk / topk = {statistics.median(res['batchtopk']) / statistics.median(res['topk']):.2f}")


if __name__ == "__main__":
    main()
