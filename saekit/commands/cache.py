"""`saekit cache`: run a model once over a corpus and write its activations to disk shards
(``saekit.activations.model_cache.cache_model_activations``)."""

from __future__ import annotations

import argparse

from saekit.counts import count_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="cache a model's activations at hookpoints as safetensors shards",
        description="Run MODEL over a corpus once and write activations at HOOKPOINTS to fixed-size "
        "safetensors shards with a JSON manifest. An interrupted run resumes from the last complete "
        "shard when rerun.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="saekit model folder, local Hugging Face folder, or transformer-lens name",
    )
    p.add_argument("--hookpoints", nargs="+", default=[], help="hook names (transformer-lens) or module paths (HF)")
    p.add_argument(
        "--transcoder-layer",
        type=int,
        action="append",
        default=[],
        help="also cache the MLP input/output pair of this layer (repeatable)",
    )
    p.add_argument(
        "--tokens", type=count_arg("--tokens"), required=True, help="activation rows (tokens) to cache, e.g. 200k or 1M"
    )
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument(
        "--dataset",
        default=None,
        help="HF dataset name or local text/jsonl/parquet path (default: built-in corpus)",
    )
    p.add_argument("--split", default="train", help="dataset split (or built-in corpus split)")
    p.add_argument("--text-column", default="text", help="dataset column holding the text")
    p.add_argument("--n-ctx", type=int, default=None, help="context length (default: the model's, at most 1024)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="storage precision")
    p.add_argument("--shard-tokens", type=count_arg("--shard-tokens"), default=65536, help="rows per shard")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--keep-bos", action="store_true", help="keep BOS positions (dropped by default)")
    p.add_argument("--exclude-special", action="store_true", help="drop every special-token position")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--overwrite", action="store_true", help="delete an existing cache in --out first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.activations.model_cache import cache_model_activations

    out, hookpoints = cache_model_activations(
        args.model,
        args.hookpoints,
        args.out,
        args.tokens,
        transcoder_layers=args.transcoder_layer,
        dataset=args.dataset,
        split=args.split,
        text_column=args.text_column,
        n_ctx=args.n_ctx,
        keep_bos=args.keep_bos,
        exclude_special=args.exclude_special,
        device=args.device,
        dtype=args.dtype,
        shard_tokens=args.shard_tokens,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    print(f"cached {args.tokens} tokens at {len(hookpoints)} hookpoint(s) in {out}")
    return 0
