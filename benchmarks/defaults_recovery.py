"""Planted-feature recovery at saekit's defaults, per kind and input scale (issues 18 and 21).

The flat world of tests/synthetic.py (``--d`` dims, ``--features`` unit features, ~3 active per
token) scaled to E||x||² = d and to d/10⁴; each kind trained with no learning rate and no sparsity
coefficient given (the defaults), optionally with overrides, all dictionaries of one scale in one
``Trainer`` sweep (the same batches). Prints one JSON line per dictionary: kind, scale, MMCS (|cos|
for abstopk), fraction matched at cos > 0.9, FVU, L0 and dead fraction on 4000 training rows.

Run:  python benchmarks/defaults_recovery.py [--kinds topk,batchtopk,...] [--tokens 150000]
          [--set normalize=true] [--lr-mult 1.0] [--dset k_aux=32]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import feature_recovery, sparse_feature_data  # noqa: E402

from saekit import DictionaryConfig, TrainConfig  # noqa: E402
from saekit.training import Trainer  # noqa: E402

KIND_ARGS = {"topk": {"k": 3}, "batchtopk": {"k": 3}, "matryoshka": {"k": 3}, "abstopk": {"k": 3}, "relu": {}, "gated": {}}


def _value(s: str):
    for conv in (int, float):
        with contextlib.suppress(ValueError):
            return conv(s)
    return {"true": True, "false": False, "none": None}.get(s.lower(), s)


def _pairs(items: list[str]) -> dict:
    return {k: _value(v) for k, v in (s.split("=", 1) for s in items)}


def recovery(kind: str, feats: torch.Tensor, W_dec: torch.Tensor) -> tuple[float, float]:
    if kind != "abstopk":
        return feature_recovery(feats, W_dec)
    W = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (feats @ W.T).abs().max(1).values
    return float(best.mean()), float((best > 0.9).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", default="topk,batchtopk,matryoshka,abstopk,relu,gated")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--latents", type=int, default=512)
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--tokens", type=int, default=150_000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--scales", default="norm_d,norm_tiny")
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides, e.g. normalize=true")
    ap.add_argument("--dset", nargs="*", default=[], help="DictionaryConfig overrides for every kind")
    ap.add_argument("--lr-mults", type=float, nargs="*", default=[1.0], help="multiples of the default rate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    X, feats = sparse_feature_data(n=args.rows, d=args.d, n_features=args.features, mean_active=3.0, seed=args.seed)
    at_d = X * (args.d / X.pow(2).sum(-1).mean()).sqrt()
    sets = {"norm_d": at_d, "norm_tiny": at_d * 1e-2, "raw": X}
    kinds = args.kinds.split(",")
    tset, dset = _pairs(args.set), _pairs(args.dset)
    for scale in args.scales.split(","):
        cfgs, mults = [], []
        for kind in kinds:
            for m in args.lr_mults:
                cfgs.append(DictionaryConfig(kind=kind, d_in=args.d, n_latents=args.latents, **{**KIND_ARGS[kind], **dset}))
                mults.append(m)
        tcfg = TrainConfig(batch_size=args.batch, total_tokens=args.tokens, seed=args.seed, device="cpu", **tset)
        t0 = time.perf_counter()
        tr = Trainer(cfgs, sets[scale], tcfg, progress=False)
        for run, m in zip(tr.runs, mults):
            run.base_lr *= m
        saes = tr.fit()
        secs = time.perf_counter() - t0
        x = sets[scale][:4000]
        for cfg, m, run, sae in zip(cfgs, mults, tr.runs, saes):
            with torch.no_grad():
                fvu = float((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
                l0 = float((sae.encode(x) != 0).sum(-1).float().mean())
            mmcs, matched = recovery(cfg.kind, feats, sae.W_dec.detach())
            print(json.dumps({
                "kind": cfg.kind, "scale": scale, "lr": round(run.base_lr, 6), "lr_mult": m, "mmcs": round(mmcs, 3),
                "matched": round(matched, 2), "fvu": round(fvu, 3), "l0": round(l0, 2),
                "dead": round(run.tracker.dead_fraction(), 3), "set": tset, "dset": dset, "secs": round(secs, 1),
            }), flush=True)


if __name__ == "__main__":
    main()
