"""Step time and tokens/s of the distributed modes against one process, on gloo (CPU) or NCCL.

    .venv/bin/python benchmarks/bench_distributed.py [--ranks 2] [--d 256] [--n 16384] [--k 32]
        [--batch 2048] [--steps 12] [--device cpu]

Modes, all on the same TopK dictionary and batch (the global batch):
  one process   Trainer, the reference
  data parallel DataParallelTrainer on N ranks (each rank B/N rows, gradient all-reduce)
  latent shard  LatentShardedTrainer on N ranks (each rank n/N latents, sharded top-k)
and the bytes each mode moves per step per rank (from the shapes). Writes
benchmarks/out/distributed.json and prints a Markdown table. The first 3 steps are warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

OUT = Path(__file__).resolve().parent / "out" / "distributed.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(trainer, steps: int, barrier=None) -> tuple[float, float]:
    """(wall seconds per step, process CPU seconds per step) over ``steps`` after 3 warm-up steps."""
    for _ in range(3):
        trainer.step(*trainer.next_batch())
    if barrier:
        barrier()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.step(*trainer.next_batch())
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    if barrier:
        barrier()
    return (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps


def _setup(args):
    from saekit.config import DictionaryConfig, TrainConfig

    torch.manual_seed(0)
    x = torch.randn(args.batch * 8, args.d)
    cfg = DictionaryConfig(kind="topk", d_in=args.d, n_latents=args.n, k=args.k)
    total = args.batch * (args.steps + 4)
    tcfg = TrainConfig(batch_size=args.batch, total_tokens=total, seed=0, device=args.device, log_every=0)
    return x, cfg, tcfg


def _worker(rank: int, world: int, port: int, args, queue) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(max(1, args.threads))
    from saekit.parallel.comm import barrier, init_distributed, shutdown
    from saekit.parallel.data_parallel import DataParallelTrainer
    from saekit.parallel.latent_sharded import LatentShardedTrainer

    init_distributed(timeout_s=300, device=args.device)
    x, cfg, tcfg = _setup(args)
    res = {}
    for name, cls in (("data parallel", DataParallelTrainer), ("latent shard", LatentShardedTrainer)):
        trainer = cls(cfg, x, tcfg, progress=False)
        res[name] = _timed(trainer, args.steps, barrier)
        del trainer
    queue.put((rank, res))
    shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (all modes)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    os.environ.setdefault("SAEKIT_NO_PROGRESS", "1")

    from saekit.training import Trainer

    torch.set_num_threads(max(1, args.threads))
    x, cfg, tcfg = _setup(args)
    single = _timed(Trainer(cfg, x, tcfg, progress=False), args.steps)

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = mp.spawn(_worker, args=(args.ranks, _free_port(), args, queue), nprocs=args.ranks, join=False)
    got = dict(queue.get() for _ in range(args.ranks))
    procs.join()

    n_par = 2 * args.d * args.n + args.n + args.d
    b, d, k, w = args.batch, args.d, args.k, args.ranks
    bytes_step = {
        "one process": 0,
        # ring all-reduce of fp32 gradients: 2 (w-1)/w of the buffer per rank
        "data parallel": int(2 * (w - 1) / w * 4 * n_par),
        # top-k all-gathers (values fp32 + indices int64, main and AuxK-free), decoder partials
        # all-reduced forward, encoder-input gradient all-reduced backward
        "latent shard": int(b * k * w * 12 + 2 * 2 * (w - 1) / w * 4 * b * d),
    }
    rows = [("one process", single)]
    for name in ("data parallel", "latent shard"):
        wall = max(got[r][name][0] for r in got)  # a step ends when the slowest rank ends
        cpu = sum(got[r][name][1] for r in got) / len(got)
        rows.append((name, (wall, cpu)))
    result = {
        "args": vars(args),
        "device": args.device,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "load_average": os.getloadavg(),
        "modes": {
            name: {
                "wall_s_per_step": wall,
                "cpu_s_per_step": cpu,
                "tokens_per_s": args.batch / wall,
                "vs_one_process": single[0] / wall,
                "comm_bytes_per_step_per_rank": bytes_step[name],
            }
            for name, (wall, cpu) in rows
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"d={args.d} n={args.n} k={args.k} B={args.batch} ranks={w} device={args.device} "
          f"load={os.getloadavg()[0]:.1f}")
    print("| mode | wall ms/step | CPU ms/step (per process) | tokens/s | speed vs 1 process | comm MB/step/rank |")
    print("|---|---|---|---|---|---|")
    for name, m in result["modes"].items():
        print(
            f"| {name} | {1000 * m['wall_s_per_step']:.1f} | {1000 * m['cpu_s_per_step']:.1f} | "
            f"{m['tokens_per_s']:,.0f} | {m['vs_one_process']:.2f}x | {m['comm_bytes_per_step_per_rank'] / 1e6:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
