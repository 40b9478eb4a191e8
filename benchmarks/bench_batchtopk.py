"""BatchTopK vs TopK training speed, side by side on one machine (issue 18).

Both train on the same random batches (256-d, 4096 latents, k = 32, batch 4096 by default).
The trainers are built once; then the kinds take turns step by step (topk, batchtopk,
batchtopk-dense, topk, ...), so a change in machine load hits all alike, and each step is timed
by wall clock and by the process's CPU time (all threads; waiting for a core does not count,
so on a machine shared with other jobs it is the steadier figure). Reports the median step as
rows/s after ``--warmup`` untimed steps. ``batchtopk-dense`` is batchtopk through plain
autograd (``use_kernels="dense"``: the dense [B, n] code, its matmul and dense backward), the
path the sparse one replaces.

Run: .venv/bin/python benchmarks/bench_batchtopk.py [--steps 30 --device cpu --threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from saekit import DictionaryConfig, TrainConfig
from saekit.training import Trainer

KINDS = ("topk", "batchtopk", "batchtopk-dense")


def trainer(name: str, x: torch.Tensor, args) -> Trainer:
    kind, _, mode = name.partition("-")
    cfg = DictionaryConfig(kind=kind, d_in=args.d, n_latents=args.n, k=args.k)
    tcfg = TrainConfig(
        batch_size=args.batch, total_tokens=args.batch * 10_000, lr=1e-3, device=args.device, log_every=10**9,
        use_kernels=mode or "auto",
    )
    t = Trainer(cfg, x, tcfg, progress=False)
    for _ in range(args.warmup):
        t.step(*t.next_batch())
    return t


def timed_step(t: Trainer, sync) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one training step."""
    batch = t.next_batch()
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    t.step(*batch)
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved_times(trainers: dict[str, Trainer], steps: int, sync) -> dict[str, list[tuple[float, float]]]:
    """``steps`` timed steps of every trainer, taking turns step by step (load hits all alike)."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in trainers}
    for _ in range(steps):
        for name, t in trainers.items():
            times[name].append(timed_step(t, sync))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per kind, interleaved")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    x = torch.randn(args.rows, args.d, generator=torch.Generator().manual_seed(0))
    times = interleaved_times({name: trainer(name, x, args) for name in KINDS}, args.steps, sync)
    for i, clock in enumerate(("wall", "cpu")):
        rate = {name: args.batch / statistics.median(s[i] for s in v) for name, v in times.items()}
        for name in KINDS:
            print(f"{clock:4} {name:16} {rate[name]:10.0f} rows/s (median step)")
        print(f"{clock:4} batchtopk / topk = {rate['batchtopk'] / rate['topk']:.2f}; "
              f"batchtopk-dense / topk = {rate['batchtopk-dense'] / rate['topk']:.2f}")
    halves = []
    for h in (slice(0, args.steps // 2), slice(args.steps // 2, args.steps)):
        med = {name: statistics.median(s[1] for s in times[name][h]) for name in ("topk", "batchtopk")}
        halves.append(med["topk"] / med["batchtopk"])
    print(f"cpu batchtopk / topk by half of the run: {', '.join(f'{r:.2f}' for r in halves)}")
    print(f"threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
