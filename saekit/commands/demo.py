"""`saekit demo`: the whole pipeline on the built-in default, on a laptop CPU.

Trains tiny model variants (baseline, two regularisers, the random control) on the built-in
corpus, then trains top-k SAEs and transcoders on each (two seeds), evaluates, compares across
variants and writes runs/demo/report.html.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from saekit.config import ModelConfig

DEMO_VARIANTS = ["baseline", "act_l1", "pruned", "random"]
# Small enough that the whole demo fits in ~15 minutes on a 2-core CPU.
DEMO_MODEL = ModelConfig(
    n_layers=2, d_model=128, n_heads=4, d_mlp=512, n_ctx=64, batch_size=32, steps=300, warmup_steps=30, device="cpu"
)


def add_parser(sub) -> None:
    parser = sub.add_parser("demo", help="the whole pipeline on the built-in corpus: variants → dictionaries → report")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--steps", type=int, default=None, help="model training steps per variant")
    parser.add_argument("--train-tokens", type=int, default=None, help="dictionary training tokens (default: compare's)")
    parser.add_argument("--overwrite", action="store_true", help="retrain models already in --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.models import train_variants
    from saekit.pipeline import run_comparison

    start = time.perf_counter()
    base = DEMO_MODEL if args.steps is None else DEMO_MODEL.replace(steps=args.steps)
    handles = train_variants(DEMO_VARIANTS, args.out / "models", base=base, overwrite=args.overwrite)
    for variant, handle in handles.items():
        print(f"{variant:>12}: validation loss {handle.info['val_loss']:.3f}  → {handle.path}")
    model_s = time.perf_counter() - start
    extra = {} if args.train_tokens is None else {"train_tokens": args.train_tokens}
    run_comparison(
        [h.path for h in handles.values()], out_dir=args.out, device="cpu", cache_dir=args.out / "cache", **extra
    )
    total = time.perf_counter() - start
    print(f"demo finished in {total:.0f} s (models {model_s:.0f} s); report: {args.out / 'report.html'}")
    return 0
