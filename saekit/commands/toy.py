"""`saekit toy max-of-k`: ground-truth toy models (train variants and dictionaries, score, report)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parser(sub) -> None:
    parser = sub.add_parser("toy", help="ground-truth toy models scored against known features")
    verbs = parser.add_subparsers(dest="toy_command", metavar="TOY", required=True)
    mk = verbs.add_parser("max-of-k", help="the max-of-K transformer (Gross et al. 2024) and its dictionaries")
    mk.add_argument("--out", required=True, type=Path, help="output folder (results.json, report.html)")
    mk.add_argument("--variants", default="baseline", help="comma-separated: baseline, l1_weights, act_l1, random")
    mk.add_argument("--widths", type=_int_list, default=None, help="dictionary widths (default: V, 2V, 4V, 8V)")
    mk.add_argument("--vocab", type=int, default=64, help="vocabulary size V")
    mk.add_argument("--k", type=int, default=4, help="sequence length K")
    mk.add_argument("--steps", type=int, default=1000, help="model training steps")
    mk.add_argument("--dict-k", type=int, default=1, help="active latents per input of the top-k dictionaries")
    mk.add_argument("--dict-tokens", type=int, default=1 << 17, help="training inputs per dictionary")
    mk.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    mk.add_argument("--overwrite", action="store_true", help="replace earlier max-of-K results in --out")
    mk.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.config import MAX_OF_K_VARIANTS
    from saekit.errors import ConfigError

    variants = [v for v in args.variants.split(",") if v]
    for variant in variants:  # refused before the slow imports below
        if variant not in MAX_OF_K_VARIANTS:
            raise ConfigError(f"variant {variant!r} does not apply to max-of-K; expected some of {', '.join(MAX_OF_K_VARIANTS)}.")
    if (args.out / "results.json").exists() and not args.overwrite:
        raise ConfigError(f"{args.out} already holds max-of-K results; pass --overwrite or choose another --out.")
    from saekit.pipeline.toy_max_of_k import run_max_of_k

    results = run_max_of_k(
        args.out, variants, args.widths, vocab=args.vocab, k=args.k,
        steps=args.steps, dict_k=args.dict_k, dict_tokens=args.dict_tokens, seed=args.seed, overwrite=args.overwrite,
    )  # fmt: skip
    best = results["dictionaries"]
    w0 = min(results["settings"]["widths"])
    print(
        f"max-of-{args.k}: accuracy {results['model']['accuracy']:.5f}; dedicated max fraction at width {w0}: "
        f"resid {best[f'resid_w{w0}']['dedicated_max_fraction']:.2f}, logits {best[f'logits_w{w0}']['dedicated_max_fraction']:.2f}; "
        f"wrote {args.out / 'results.json'} and {args.out / 'report.html'}"
    )
    return 0
