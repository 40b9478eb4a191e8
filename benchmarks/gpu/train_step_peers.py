"""One whole TopK training step (forward, loss with AuxK, backward, Adam step) for one framework.

    python benchmarks/gpu/train_step_peers.py --framework saekit|saelens|sparsify [--d 768 --n 32768 --k 32 --batch 4096]

saekit's Trainer.step; the peers' step bodies are benchmarks/peer_steps.py's, the ones
benchmarks/train_vs_peers.py and defaults_vs_peers.py train with (SAELens's
``training_forward_pass`` + grad clipping; sparsify's forward, parallel-gradient removal and
decoder renormalisation, with their dead-latent counts), here on one device and timed per step. Every framework sees the same
data: ``--data-seed`` draws the same Gaussian batches. Half of the latents are marked dead for
the peers (saekit tracks its own) so their AuxK path runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/peer_steps.py: the peers' step bodies


def saekit_step(x: torch.Tensor, a: argparse.Namespace):
    from saekit.config import DictionaryConfig, TrainConfig
    from saekit.training import TensorSource, Trainer

    cfg = DictionaryConfig(kind="topk", d_in=a.d, n_latents=a.n, k=a.k)
    tcfg = TrainConfig(batch_size=a.batch, total_tokens=a.batch * 1000, lr=1e-4, device=a.device, log_every=0)
    tr = Trainer(cfg, TensorSource(x, shuffle=False), tcfg, progress=False)
    xb = x[: a.batch].to(a.device)
    return lambda: tr.step(xb, None)


def saelens_step(x: torch.Tensor, a: argparse.Namespace):
    from peer_steps import SAELensTopK

    m = SAELensTopK(a.d, a.n, a.k, lr=1e-4, device=a.device)
    xb, dead = x[: a.batch].to(a.device), _half_dead(a)
    return lambda: m.step(xb, dead_mask=dead)


def sparsify_step(x: torch.Tensor, a: argparse.Namespace):
    from peer_steps import SparsifyTopK

    m = SparsifyTopK(a.d, a.n, a.k, lr=1e-4, device=a.device)
    xb, dead = x[: a.batch].to(a.device), _half_dead(a)
    return lambda: m.step(xb, dead_mask=dead)


def _half_dead(a: argparse.Namespace) -> torch.Tensor:
    """Half of the latents marked dead, so the peers' AuxK path runs."""
    dead = torch.zeros(a.n, dtype=torch.bool, device=a.device)
    dead[: a.n // 2] = True
    return dead


STEPS = {"saekit": saekit_step, "saelens": saelens_step, "sparsify": sparsify_step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--framework", choices=sorted(STEPS), required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--n", type=int, default=32768)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--data-seed", type=int, default=0)
    a = p.parse_args()
    rec = {k: getattr(a, k) for k in ("framework", "device", "d", "n", "k", "batch")}
    try:
        x = torch.randn(a.batch, a.d, generator=torch.Generator().manual_seed(a.data_seed))
        torch.manual_seed(0)
        step = STEPS[a.framework](x, a)

        def sync():
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()

        for _ in range(a.warmup):
            step()
        sync()
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            step()
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        rec.update(ms=statistics.median(times), ms_min=min(times), tokens_per_s=a.batch / statistics.median(times) * 1e3)
    except Exception as e:  # recorded in the results, not hidden
        rec["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:200]
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
