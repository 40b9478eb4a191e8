"""One TopK training step (loss with AuxK, backward, Adam step) with the sparse decode vs the dense one.

    .venv/bin/python benchmarks/kernels/bench_train_step.py --device cpu --batch 1024 --n 16384 --k 32

The dictionary is saekit's TopK (``saekit.dictionaries.create``), whose decode calls
``saekit.kernels.sparse_decode``; ``use_backend`` switches that call between the dense
``z @ W_dec`` (``dense``), the torch reference (``torch``) and the Triton kernels (``triton``,
CUDA only). Half of the latents are marked dead so the AuxK decode runs too. Backends are
interleaved over ``--rounds`` and each keeps its fastest median (a shared machine is noisy).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time

import torch

from saekit.config import DictionaryConfig
from saekit.dictionaries import create
from saekit.kernels import use_backend


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--n", type=int, default=16384)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--backends", nargs="+", default=None)
    p.add_argument("--out", default=None, help="also append one JSON line per backend to this file")
    a = p.parse_args()
    dev = torch.device(a.device)
    backends = a.backends or (["dense", "triton", "torch"] if dev.type == "cuda" else ["dense", "torch"])
    torch.manual_seed(0)
    cfg = DictionaryConfig(kind="topk", d_in=a.d, n_latents=a.n, k=a.k, seed=0, b_dec_init="zero")
    sae = create(cfg, seed=0).to(dev)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    x = torch.randn(a.batch, a.d, device=dev)
    dead = torch.zeros(a.n, dtype=torch.bool, device=dev)
    dead[: a.n // 2] = True

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        sae.training_loss(x, dead_mask=dead).loss.backward()
        opt.step()

    best: dict[str, float] = {}
    for _ in range(a.rounds):
        for be in backends:
            with use_backend(be):
                step()  # warm-up (allocations, Triton compilation)
                sync()
                times = []
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    step()
                    sync()
                    times.append((time.perf_counter() - t0) * 1e3)
            best[be] = min(best.get(be, float("inf")), statistics.median(times))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# TopK training step, d={a.d} n={a.n} k={a.k} B={a.batch}, {dev}, {platform.node()}, {stamp}")
    print("| backend | ms / step | × vs dense |")
    print("|---|---|---|")
    for be in backends:
        ratio = best["dense"] / best[be] if "dense" in best else float("nan")
        print(f"| {be} | {best[be]:.0f} | {ratio:.2f} |")
        if a.out:
            rec = dict(backend=be, ms=best[be], vs_dense=ratio, d=a.d, n=a.n, k=a.k, B=a.batch, device=str(dev), date=stamp)
            with open(a.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
