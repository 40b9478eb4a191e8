"""Matryoshka vs BatchTopK training speed, side by side in one process (issue 18).

The same random batches for every kind; the trainers are built once, then take turns step by
step (batchtopk, matryoshka, matryoshka-per-prefix, batchtopk, ...), so a change in machine load
hits all alike. Each step is timed by wall clock and by the process's CPU time. Reports the
median step as rows/s and the ratios to batchtopk. ``matryoshka-per-prefix`` is the earlier
implementation (one sparse decode of every kept entry per prefix, masked to the prefix), kept
here as the reference the incremental one (one decode of each group, cumulative sums) replaces.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_matryoshka.py [--d 64 --n 256 --k 5 --batch 256]
         [--dead-tokens 2560]   (a short dead window: latents count as dead, AuxK runs)
         [--data hier]          (the hierarchical benchmark's world instead of Gaussian rows)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from bench_batchtopk import interleaved_times  # this folder is on sys.path when run as a script

from saekit import DictionaryConfig, TrainConfig
from saekit.dictionaries.matryoshka import MatryoshkaDictionary
from saekit.training import Trainer

KINDS = ("batchtopk", "matryoshka", "matryoshka-per-prefix")


def per_prefix_terms(self, vals, sel, base, ys):
    """The per-prefix loop: every prefix decodes all kept entries (masked), m decodes per step."""
    widths = self.cfg.matryoshka_widths
    weight = self.inner_weight
    terms, y_w = {}, base
    for w in widths:
        y_w = base + self.decode_batch(vals * (sel.cols < w), sel)
        mse = (y_w - ys).pow(2).sum(-1).mean()
        if w == widths[-1]:
            terms["mse"] = mse
        else:
            terms[f"mse_{w}"] = weight * mse
    return terms, y_w


class PerPrefixMatryoshka(MatryoshkaDictionary):
    reconstruction_terms = per_prefix_terms


def trainer(name: str, x: torch.Tensor, args) -> Trainer:
    kind = name.partition("-")[0]
    cfg = DictionaryConfig(kind=kind, d_in=args.d, n_latents=args.n, k=args.k)
    tcfg = TrainConfig(batch_size=args.batch, total_tokens=args.batch * 10_000, lr=1e-3, device=args.device, log_every=10**9,
                       dead_tokens=args.dead_tokens)
    t = Trainer(cfg, x, tcfg, progress=False)
    if name == "matryoshka-per-prefix":
        t.runs[0].sae.__class__ = PerPrefixMatryoshka
    for _ in range(args.warmup):
        t.step(*t.next_batch())
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=200, help="timed steps per kind, interleaved")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--data", choices=("gauss", "hier"), default="gauss", help="random rows or the hierarchical world")
    ap.add_argument("--dead-tokens", type=int, default=None, help="dead window (small: AuxK's dense path runs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    if args.data == "hier":  # the hierarchical benchmark's world (benchmarks/hier_vs_saelens.py)
        from saekit.evaluation.probes import hierarchical_data

        x = hierarchical_data(args.rows, d=args.d, n_features=256, n_parents=16, children_per_parent=4, mean_active=4, seed=0).x
    else:
        x = torch.randn(args.rows, args.d, generator=torch.Generator().manual_seed(0))
    trainers = {name: trainer(name, x, args) for name in KINDS}
    times = interleaved_times(trainers, args.steps, sync)
    dead = {name: t.runs[0].tracker.dead_fraction() for name, t in trainers.items()}
    print("dead fraction at the end: " + ", ".join(f"{name} {v:.2f}" for name, v in dead.items()))
    for i, clock in enumerate(("wall", "cpu")):
        rate = {name: args.batch / statistics.median(s[i] for s in v) for name, v in times.items()}
        for name in KINDS:
            print(f"{clock:4} {name:22} {rate[name]:10.0f} rows/s (median step), "
                  f"{rate[name] / rate['batchtopk']:.2f} x batchtopk")
    print(f"data {args.data}, d {args.d}, n {args.n}, k {args.k}, batch {args.batch}, threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
