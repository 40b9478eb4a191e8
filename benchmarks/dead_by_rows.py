"""How many of saekit's latents look dead depends on how many rows are looked at: train top-k at
saekit's defaults on defaults_vs_peers.py's tiny-LM row (512 latents, k = 8, batch 4096, the same
batch order) and count the latents that never fire on 20k held-out rows (the benchmark's
"dead"), on 20k and on all training rows, and by the trainer's own dead window.

Run:  python benchmarks/dead_by_rows.py --cache lm/train --val-cache lm/val [--tokens 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--val-cache", required=True)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    from saekit.activations import ActivationCache
    from saekit.config import DictionaryConfig, TrainConfig
    from saekit.training import TensorSource, Trainer

    torch.set_num_threads(1)
    X = ActivationCache(args.cache).read_all().float()
    Xv = ActivationCache(args.val_cache).read_all().float()[:20_000]
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))  # the benchmark's order
    steps = args.tokens // args.batch
    cfg = DictionaryConfig(kind="topk", d_in=X.shape[1], n_latents=512, k=8)
    tcfg = TrainConfig(batch_size=args.batch, total_tokens=args.batch * steps, device="cpu", log_every=0)
    tr = Trainer(cfg, TensorSource(X[perm], shuffle=False), tcfg, progress=False)
    t0 = time.time()
    for _ in range(steps):
        tr.step(*tr.next_batch())
    sae = tr.finish()[0]  # the saved weights (the tail's mean where the trainer averages)

    @torch.no_grad()
    def never_fire(rows: torch.Tensor) -> float:
        return float(((sae.encode(rows) != 0).sum(0) == 0).float().mean())

    print(json.dumps({
        "train_s": time.time() - t0, "dead_on_20k_held_out": never_fire(Xv),
        "dead_on_20k_training_rows": never_fire(X[perm[:20_000]]), f"dead_on_all_{X.shape[0]}_training_rows": never_fire(X),
        "dead_by_the_trainers_window": tr.runs[0].tracker.dead_fraction(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
