"""The default learning rate on issue 21's two peer rows, with and without normalised inputs.

One ``Trainer`` sweep (the same batches for all) of top-k dictionaries at multiples of the default
rate (saekit.config.default_lr) on the rows of benchmarks/defaults_vs_peers.py: the synthetic
world (64-d, 512 features, ~5 active; 512 latents, k = 8) or a tiny LM's residual stream from two
``saekit cache`` folders; batch 4096, 1M tokens (244 steps) unless told. Held-out FVU, L0, dead
fraction (latents that never fire on the held-out rows, as the peers' table counts them) and MMCS
(synthetic). One JSON line per dictionary.

Run:  python benchmarks/defaults_lr_cells.py --data synthetic --mults 1 2 4 [--normalize true|false|none]
      python benchmarks/defaults_lr_cells.py --data lm --cache lm/train --val-cache lm/val --mults 0.5 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from defaults_vs_peers import cached_rows, synthetic_rows  # noqa: E402

from saekit import DictionaryConfig, TrainConfig  # noqa: E402
from saekit.training import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--cache")
    ap.add_argument("--val-cache")
    ap.add_argument("--kind", default="topk")
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n-latents", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--mults", type=float, nargs="+", default=[1.0])
    ap.add_argument("--normalize", default="none", help="true | false | none (the kind's default)")
    ap.add_argument("--prescale-centred", action="store_true",
                    help="diagnostic: scale the rows so E||x - mean||² = d (use with --normalize false)")
    ap.add_argument("--aux-coef", type=float, default=None, help="AuxK coefficient of every dictionary (default 1/32)")
    ap.add_argument("--dead-tokens", type=int, default=None, help="TrainConfig.dead_tokens (AuxK's dead window)")
    ap.add_argument("--warmup", type=int, default=None, help="lr_warmup_steps (default: the rule's)")
    ap.add_argument("--k-aux", type=int, default=None, help="DictionaryConfig.k_aux (default d_in // 2)")
    ap.add_argument("--freeze-b-enc", action="store_true", help="diagnostic: b_enc kept at 0 (no gradient)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.data == "synthetic":
        X, Xv, feats = synthetic_rows(args.tokens, 20_000)
    else:
        X, Xv, feats = cached_rows(args.cache, args.val_cache, 20_000)
    if args.prescale_centred:
        s = (X.shape[1] / (X - X.mean(0)).pow(2).sum(-1).mean()).sqrt()
        X, Xv = X * s, Xv * s
    norm = {"true": True, "false": False, "none": None}[args.normalize]
    aux = {} if args.aux_coef is None else {"aux_coef": args.aux_coef}
    if args.k_aux is not None:
        aux["k_aux"] = args.k_aux
    cfgs = [DictionaryConfig(kind=args.kind, d_in=X.shape[1], n_latents=args.n_latents, k=args.k, **aux) for _ in args.mults]
    tcfg = TrainConfig(batch_size=args.batch, total_tokens=args.tokens, device="cpu", log_every=0, normalize=norm,
                       lr_warmup_steps=args.warmup, dead_tokens=args.dead_tokens)
    tr = Trainer(cfgs, X, tcfg, progress=False)
    for run, m in zip(tr.runs, args.mults):
        run.base_lr *= m
        if args.freeze_b_enc:  # Adam with a zero gradient from the start never moves it
            run.sae.b_enc.register_hook(torch.zeros_like)
    t0 = time.perf_counter()
    saes = tr.fit()
    secs = time.perf_counter() - t0
    from synthetic import feature_recovery

    for m, run, sae in zip(args.mults, tr.runs, saes):
        with torch.no_grad():
            z = sae.encode(Xv)
            xh = sae(Xv)
        row = {"data": args.data, "kind": args.kind, "normalize": args.normalize, "freeze_b_enc": args.freeze_b_enc, "centred": args.prescale_centred, "mult": m, "lr": run.base_lr, "warmup": tcfg.warmup_steps(), "aux_coef": cfgs[0].aux_coef, "dead_tokens": run.tracker.window, "k_aux": cfgs[0].k_aux,
               "fvu": float((xh - Xv).pow(2).sum() / (Xv - Xv.mean(0)).pow(2).sum()),
               "l0": float((z != 0).sum(-1).float().mean()), "dead_val": float(((z != 0).sum(0) == 0).float().mean()),
               "dead_window": run.tracker.dead_fraction(), "secs": secs}
        if feats is not None:
            row["mmcs"], row["matched"] = feature_recovery(feats, sae.W_dec.detach())
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
