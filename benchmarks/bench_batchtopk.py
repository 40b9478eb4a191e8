"""BatchTopK vs TopK training speed, side by side on one machine (issue 18).

Both train on the same random batches (256-d, 4096 latents, k = 32, batch 4096 by default);
the runs alternate (topk, batchtopk, topk, ...) so a change in machine load hits both alike.
Reports rows/s per kind (median over the repeats) after ``--warmup`` untimed steps. The third
row, ``batchtopk-dense``, is batchtopk through plain autograd (``use_kernels="dense"``: the dense
[B, n] code, its matmul and dense backward), the path the sparse one replaces.

Run: .venv/bin/python benchmarks/bench_batchtopk.py [--steps 10 --repeats 3 --device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from saekit import DictionaryConfig, TrainConfig
from saekit.training import Trainer


def rows_per_s(name: str, x: torch.Tensor, args) -> float:
    kind, _, mode = name.partition("-")
    cfg = DictionaryConfig(kind=kind, d_in=args.d, n_latents=args.n, k=args.k)
    tcfg = TrainConfig(
        batch_size=args.batch, total_tokens=args.batch * 10_000, lr=1e-3, device=args.device, log_every=10**9,
        use_kernels=mode or "auto",
    )
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
    res: dict[str, list[float]] = {"topk": [], "batchtopk": [], "batchtopk-dense": []}
    for _ in range(args.repeats):
        for kind in res:
            res[kind].append(rows_per_s(kind, x, args))
    for kind, v in res.items():
        print(f"{kind:16} {statistics.median(v):10.0f} rows/s  (runs: {', '.join(f'{r:.0f}' for r in v)})")
    med = {kind: statistics.median(v) for kind, v in res.items()}
    print(f"batchtopk / topk = {med['batchtopk'] / med['topk']:.2f}; batchtopk-dense / topk = {med['batchtopk-dense'] / med['topk']:.2f}")
    print(f"per repeat batchtopk / topk: {', '.join(f'{b / t:.2f}' for b, t in zip(res['batchtopk'], res['topk']))}")
    print(f"threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
