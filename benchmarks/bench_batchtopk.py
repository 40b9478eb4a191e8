"""BatchTopK vs TopK training speed, side by side on one machine (issue 18).

Both train on the same random batches (256-d, 4096 latents, k = 32, batch 4096 by default);
the runs alternate (topk, batchtopk, topk, ...) so a change in machine load hits both alike.
Reports rows/s per kind (median over the repeats) after ``--warmup`` untimed steps, from wall
time and from the process's CPU time (all threads): on a machine shared with other jobs the
CPU-time figure is the steadier one, since waiting for a core does not count. The third
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


def rows_per_s(name: str, x: torch.Tensor, args) -> tuple[float, float]:
    """(rows per wall second, rows per CPU second) of ``args.steps`` training steps."""
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
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        t.step(*t.next_batch())
    sync()
    rows = args.steps * args.batch
    return rows / (time.perf_counter() - start), rows / (time.process_time() - cpu)


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
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.rows, args.d, generator=torch.Generator().manual_seed(0))
    res: dict[str, list[tuple[float, float]]] = {"topk": [], "batchtopk": [], "batchtopk-dense": []}
    for _ in range(args.repeats):
        for kind in res:
            res[kind].append(rows_per_s(kind, x, args))
    for i, clock in enumerate(("wall", "cpu")):
        med = {kind: statistics.median(r[i] for r in v) for kind, v in res.items()}
        for kind, v in res.items():
            runs = ", ".join(f"{r[i]:.0f}" for r in v)
            print(f"{clock:4} {kind:16} {med[kind]:10.0f} rows/s  (runs: {runs})")
        pairs = ", ".join(f"{b[i] / t[i]:.2f}" for b, t in zip(res["batchtopk"], res["topk"]))
        print(f"{clock:4} batchtopk / topk = {med['batchtopk'] / med['topk']:.2f} (per repeat {pairs}); "
              f"batchtopk-dense / topk = {med['batchtopk-dense'] / med['topk']:.2f}")
    print(f"threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
