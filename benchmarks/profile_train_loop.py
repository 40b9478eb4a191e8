"""Where saekit's training loop spends its time on one row of defaults_vs_peers.py (issue 21's
tiny-LM row: top-k, 512 latents, k = 8, batch 4096 on a `saekit cache` of a residual stream),
under cProfile and the torch profiler; the loop is the one the benchmark times (next_batch + step).

Run:  python benchmarks/profile_train_loop.py --cache benchmarks/out/lm/train [--steps 40] [--torch]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import torch


def build(X: torch.Tensor, n: int, k: int, batch: int, steps: int):
    from saekit.config import DictionaryConfig, TrainConfig
    from saekit.training import TensorSource, Trainer

    cfg = DictionaryConfig(kind="topk", d_in=X.shape[1], n_latents=n, k=k)
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))
    tcfg = TrainConfig(batch_size=batch, total_tokens=batch * steps, device="cpu", log_every=0)
    return Trainer(cfg, TensorSource(X[perm], shuffle=False), tcfg, progress=False)


def loop(tr, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = tr.next_batch()
        tr.step(x, y)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warm", type=int, default=5, help="steps before profiling")
    ap.add_argument("--n-latents", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--torch", action="store_true", help="also the torch profiler's operator table")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from saekit.activations import ActivationCache

    X = ActivationCache(args.cache).read_all().float()
    tr = build(X, args.n_latents, args.k, args.batch, args.warm + 2 * args.steps)
    loop(tr, args.warm)
    prof = cProfile.Profile()
    prof.enable()
    secs = loop(tr, args.steps)
    prof.disable()
    print(f"{args.steps} steps in {secs:.2f} s: {args.steps * args.batch / secs:.0f} tokens/s", flush=True)
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    if args.torch:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as p:
            loop(tr, args.steps)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    return 0


if __name__ == "__main__":
    sys.exit(main())
