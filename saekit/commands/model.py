"""`saekit model train`: train one model variant and save it as a model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from saekit.config import VARIANTS, ModelConfig


def add_parser(sub) -> None:
    parser = sub.add_parser("model", help="train model variants (baseline, regularised, random control)")
    verbs = parser.add_subparsers(dest="model_command", metavar="VERB", required=True)
    train = verbs.add_parser("train", help="train one variant on the built-in corpus (or --dataset)")
    train.add_argument("--variant", required=True, help=f"one of {', '.join(VARIANTS)}")
    train.add_argument("--coef", type=float, default=None, help="regulariser strength λ (pruned: target sparsity)")
    train.add_argument("--out", required=True, type=Path, help="output model folder")
    train.add_argument(
        "--group",
        default=None,
        help="group name for `saekit compare` (default: the variant, with its coef when several differ); "
        "models of one group are its model seeds",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a different model already in --out")
    train.add_argument(
        "--dataset",
        default=None,
        help="HF dataset name or local .txt/.jsonl/.parquet file(s) instead of the built-in corpus",
    )
    train.add_argument("--text-column", default="text", help="dataset column holding the text")
    train.add_argument("--tokenizer", default=None, help="HF tokenizer name/path (default: the built-in corpus BPE)")
    base = ModelConfig()  # the defaults shown in --help are the config's
    for name in ("steps", "batch_size", "n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "seed"):
        train.add_argument(
            "--" + name.replace("_", "-"), type=int, default=None, dest=name,
            help=f"{name.replace('_', ' ')} (default {getattr(base, name)})",
        )
    train.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {base.lr})")
    train.add_argument("--device", default="auto", help="cpu, cuda or auto")
    train.set_defaults(func=run)

    hooks = verbs.add_parser("hookpoints", help="list the hookpoints of a model folder or name")
    hooks.add_argument("model", help="model folder or transformer-lens name")
    hooks.set_defaults(func=run_hookpoints)


def _config_from_args(args: argparse.Namespace) -> ModelConfig:
    overrides = {
        name: getattr(args, name)
        for name in ("steps", "batch_size", "n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "seed", "lr")
        if getattr(args, name) is not None
    }
    return ModelConfig(variant=args.variant, coef=args.coef, group=args.group, device=args.device, **overrides)


def run(args: argparse.Namespace) -> int:
    from saekit.models import train_model

    cfg = _config_from_args(args)
    tokenizer, data = None, None
    if args.dataset or args.tokenizer:
        from saekit.models.train import dataset_tokens

        tokenizer, data = dataset_tokens(cfg, args.dataset, args.text_column, args.tokenizer)
    handle = train_model(cfg, args.out, overwrite=args.overwrite, tokenizer=tokenizer, data=data, dataset=args.dataset)
    verb = "reused the identical" if handle.info.get("reused") else "saved"
    print(f"{verb} {cfg.variant} model {'in' if handle.info.get('reused') else 'to'} {args.out} (validation loss {handle.info['val_loss']:.3f})")
    return 0


def run_hookpoints(args: argparse.Namespace) -> int:
    from saekit.models import load_model

    handle = load_model(args.model)
    print("\n".join(handle.hookpoint_names()))
    return 0
