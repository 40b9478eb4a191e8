"""`saekit demo`: the whole pipeline on the built-in default, on a laptop CPU.

Trains tiny model variants (baseline, two regularisers, the random control), two model seeds
each, on the built-in corpus, then a top-k SAE on each (three dictionary seeds), evaluates,
compares across variants, gives a verdict per variant and axis and writes runs/demo/report.html.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from saekit.config import ModelConfig

DEMO_VARIANTS = ["baseline", "act_l1", "pruned", "random"]
DEMO_MODEL_SEEDS = (0, 1)  # a verdict needs an interval over model seeds
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
    from saekit.pipeline import default_dict_cfgs, run_comparison

    start = time.perf_counter()
    base = DEMO_MODEL if args.steps is None else DEMO_MODEL.replace(steps=args.steps)
    paths = []
    for seed in DEMO_MODEL_SEEDS:
        root = args.out / "models" / f"seed{seed}"
        handles = train_variants(DEMO_VARIANTS, root, base=base.replace(seed=seed), overwrite=args.overwrite)
        for variant, handle in handles.items():
            print(f"{variant:>12} seed {seed}: validation loss {handle.info['val_loss']:.3f}  → {handle.path}")
            paths.append(handle.path)
    model_s = time.perf_counter() - start
    extra = {} if args.train_tokens is None else {"train_tokens": args.train_tokens}
    d_model, n_layers = base.d_model, base.n_layers
    sae_only = {"sae": default_dict_cfgs(d_model, n_layers)["sae"]}  # the transcoder stays out of the time budget
    run_comparison(
        paths, sae_only, out_dir=args.out, device="cpu", cache_dir=args.out / "cache", **extra
    )
    total = time.perf_counter() - start
    print(f"demo finished in {total:.0f} s (models {model_s:.0f} s); report: {args.out / 'report.html'}")
    return 0
