"""A grid to check saekit's default learning rate and warm-up (saekit.config.default_lr): the base
learning rate (and warm-up) at several widths, batch sizes and run lengths, on synthetic data with
known features or a tiny LM's residual stream. Every configuration of one (data, width, batch,
steps) cell trains in one ``Trainer`` sweep (same batches), each with its own learning rate.
(Written for issue 21; on the shared 2-core machine of that session it did not finish.)

Run:  python benchmarks/defaults_lr_search.py --grid topk [--model DIR] [--out benchmarks/out/lr_search.json]

Prints one JSON row per trained dictionary: data, kind, n_latents, batch, steps, lr, warmup,
held-out FVU, L0, dead fraction, MMCS (synthetic only).
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

from saekit.config import DictionaryConfig, TrainConfig  # noqa: E402
from saekit.training import Trainer  # noqa: E402


def synthetic(d: int, n_features: int, mean_active: float, n_rows: int, seed: int = 0):
    from synthetic import sparse_feature_data

    X, feats = sparse_feature_data(n=n_rows + 8192, d=d, n_features=n_features, mean_active=mean_active, seed=seed)
    return X[:n_rows], X[n_rows:], feats


def lm_residuals(model_dir: str, n_rows: int, hook: str = "blocks.1.hook_resid_post"):
    from saekit.activations import ActivationStream
    from saekit.data import load_corpus, pack_tokens_with_docs
    from saekit.models import load_model

    handle = load_model(model_dir, device="cpu")
    tokens, docs = pack_tokens_with_docs(load_corpus("train"), handle.tokenizer, int(handle.model.cfg.n_ctx), bos=True)
    stream = ActivationStream(handle, tokens, hook, doc_ids=docs, seed=0, buffer_tokens=1 << 15, prefetch=False)
    X = torch.cat([stream.next_batch(8192) for _ in range((n_rows + 8192 + 8191) // 8192)])[: n_rows + 8192]
    stream.close()
    return X[:n_rows], X[n_rows:], None


def cell(X, Xv, feats, kind_kw: dict, n: int, batch: int, steps: int, settings: list[tuple[float, int, float]]):
    """Train one dictionary per (lr, warmup, decay) in ``settings`` on the same batches."""
    cfgs = [DictionaryConfig(d_in=X.shape[1], n_latents=n, **kind_kw) for _ in settings]
    tcfg = TrainConfig(batch_size=batch, total_tokens=batch * steps, lr=1.0, lr_warmup_steps=settings[0][1],
                       lr_decay_fraction=settings[0][2], device="cpu", log_every=0)  # normalisation: the kind's default
    tr = Trainer(cfgs, X, tcfg, progress=False)
    for run, (lr, _, _) in zip(tr.runs, settings):
        run.base_lr = lr
    from saekit.training.schedule import lr_factor

    t0 = time.perf_counter()
    for step in range(steps):
        x, y = tr.next_batch()
        # per-run warm-up/decay: the trainer applies settings[0]'s; rescale base_lr per step
        for run, (lr, warm, decay) in zip(tr.runs, settings):
            mine = lr_factor(step, steps, warm, decay)
            common = lr_factor(step, steps, settings[0][1], settings[0][2])
            run.base_lr = lr * mine / max(common, 1e-12)
        tr.step(x, y)
        if step % 50 == 0:
            print(f"  step {step}/{steps} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    secs = time.perf_counter() - t0
    rows = []
    for run, (lr, warm, decay) in zip(tr.runs, settings):
        sae = run.sae.to_inference()
        with torch.no_grad():
            z = sae.encode(Xv)
            xh = sae(Xv)
        row = {
            "kind": kind_kw["kind"], "n_latents": n, "batch": batch, "steps": steps, "lr": lr, "warmup": warm,
            "decay": decay, "fvu": float((xh - Xv).pow(2).sum() / (Xv - Xv.mean(0)).pow(2).sum()),
            "l0": float((z != 0).sum(-1).float().mean()), "dead": float(((z != 0).sum(0) == 0).float().mean()),
            "secs": secs,
        }
        if feats is not None:
            from synthetic import feature_recovery

            row["mmcs"], row["matched"] = feature_recovery(feats, sae.W_dec.detach())
        rows.append(row)
    return rows


def rule_cells(widths=(256, 1024), steps=(100, 400), batch=256, factors=(0.25, 0.5, 1.0, 2.0, 4.0)):
    """The default rule checked: at each width and run length, the default rate times each factor
    (the default warm-up and decay for all), so the best factor should be near 1."""
    from saekit.config import default_lr, default_warmup

    return [
        ({"kind": "topk", "k": 8}, n, batch, s, [(default_lr(n, batch, s) * f, default_warmup(s), 0.2) for f in factors])
        for n in widths
        for s in steps
    ]


GRIDS = {
    "rule": rule_cells(),
    # (kind kwargs, n_latents, batch, steps, [(lr, warmup, decay), ...])
    "topk250": [({"kind": "topk", "k": 8}, 1024, 256, 250, [(8e-4, 100, 0.2)] + [(lr, 12, 0.2) for lr in (1e-3, 4e-3, 1.6e-2)])],
    "topk1000": [({"kind": "topk", "k": 8}, 1024, 1024, 1000, [(lr, 50, 0.2) for lr in (1e-3, 2.5e-3, 5e-3)])],
    "old": [({"kind": "topk", "k": 8}, 1024, 1024, s, [(8e-4, 100, 0.2)]) for s in (250, 1000)],
    "width": [
        ({"kind": "topk", "k": 8}, n, 1024, 250, [(lr, 12, 0.2) for lr in (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)])
        for n in (256, 4096)
    ],
    "batch": [
        ({"kind": "topk", "k": 8}, 1024, b, 250, [(lr, 12, 0.2) for lr in (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)])
        for b in (256, 4096)
    ],
    "warmup": [
        ({"kind": "topk", "k": 8}, 1024, 1024, 250, [(4e-3, w, 0.2) for w in (0, 12, 50, 100)]),
    ],
    "kinds": [
        ({"kind": kind, **kw}, 1024, 1024, 250, [(lr, 12, 0.2) for lr in (1e-3, 4e-3, 1.6e-2)])
        for kind, kw in (("batchtopk", {"k": 8}), ("relu", {}), ("jumprelu", {}))
    ],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", default="topk", help=",".join(GRIDS))
    ap.add_argument("--data", default="synthetic", help="synthetic | lm")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    cells = [c for g in args.grid.split(",") for c in GRIDS[g]]
    n_rows = max(b * s for _, _, b, s, _ in cells)
    n_rows = min(n_rows, 300_000)
    if args.data == "lm":
        X, Xv, feats = lm_residuals(args.model, n_rows)
    else:
        X, Xv, feats = synthetic(64, 512, 5.0, n_rows)
    for kind_kw, n, b, s, settings in cells:
        for row in cell(X, Xv, feats, kind_kw, n, b, s, settings):
            row["data"] = args.data
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
