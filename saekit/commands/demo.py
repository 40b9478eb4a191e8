"""`saekit demo`: the whole pipeline on the built-in default, on a laptop CPU (saekit.pipeline.demo).

Trains tiny model variants (baseline, two regularisers, the random control), two model seeds
each, on the built-in corpus, then a top-k SAE on each (three dictionary seeds), evaluates,
compares across variants, gives a verdict per variant and axis and writes runs/demo/report.html.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saekit.counts import count_arg


def add_parser(sub) -> None:
    parser = sub.add_parser("demo", help="the whole pipeline on the built-in corpus: variants → dictionaries → report")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--steps", type=int, default=None, help="model training steps per variant")
    parser.add_argument(
        "--train-tokens", type=count_arg("--train-tokens"), default=None, help="dictionary training tokens, e.g. 100k (default 100k)"
    )
    parser.add_argument("--overwrite", action="store_true", help="retrain models already in --out")
    parser.add_argument(
        "--planted",
        nargs="?",
        const="planted:small",
        default=None,
        metavar="SPEC",
        help="train the models on a planted language (default planted:small) and score every dictionary against "
        "its labels (the ground_truth verdict axis); see docs/planted.md",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.pipeline.demo import run_demo

    run_demo(args.out, steps=args.steps, train_tokens=args.train_tokens, overwrite=args.overwrite, planted=args.planted)
    return 0
