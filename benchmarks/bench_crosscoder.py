"""Crosscoder training throughput against an SAE of the same width on one source (CPU, one run).

    python benchmarks/bench_crosscoder.py [--d 256] [--n-latents 4096] [--k 32] [--tokens 400000]

Both train the same kind (batchtopk, k) on in-memory activations of width d: the SAE on one
source [N, d], the crosscoder on two sources [N, 2, d] (twice the input and output per token).
Tokens/s counts tokens (rows), not activation vectors. Interleaved: SAE, crosscoder, SAE,
crosscoder, ... (``--repeats``) so that a slow spell of the shared machine hits both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("SAEKIT_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
from synthetic import planted_model_pair  # noqa: E402

import saekit  # noqa: E402


def rate(cfg, source, tcfg) -> float:
    t = time.perf_counter()
    saekit.train(cfg, source, tcfg, progress=False)
    return tcfg.steps * tcfg.batch_size / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--n-latents", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--tokens", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    world = planted_model_pair(n=65_536, d=a.d, n_shared=384, n_only=64, mean_active=a.k / 2)
    tcfg = saekit.TrainConfig(batch_size=a.batch_size, total_tokens=a.tokens, lr=1e-3, device="cpu", log_every=0)
    sae = saekit.DictionaryConfig(kind="batchtopk", d_in=a.d, n_latents=a.n_latents, k=a.k)
    cc = sae.replace(n_sources=2)
    rates: dict[str, list[float]] = {"sae": [], "crosscoder": []}
    for _ in range(a.repeats):
        rates["sae"].append(rate(sae, world["a"], tcfg))
        rates["crosscoder"].append(rate(cc, {"a": world["a"], "b": world["b"]}, tcfg))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"d={a.d} n_latents={a.n_latents} k={a.k} batch={a.batch_size} tokens={a.tokens} threads={a.threads}")
    for k, v in rates.items():
        print(f"{k:>10}: median {med[k]:,.0f} tok/s (runs: {', '.join(f'{x:,.0f}' for x in v)})")
    print(f"crosscoder / SAE: {med['crosscoder'] / med['sae']:.2f}")


if __name__ == "__main__":
    main()
