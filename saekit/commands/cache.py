"""`saekit cache`: run a model once over a corpus and write its activations to disk shards."""

from __future__ import annotations

import argparse
import math
import sys

from saekit.activations.hookpoints import transcoder_hookpoints

_SUFFIX = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


def token_count(text: str) -> int:
    """'200000', '200k', '1M', '1.5M' -> an integer token count."""
    t = text.strip().lower().replace("_", "")
    scale = _SUFFIX.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale != 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a token count like 200000, 200k or 1M, got {text!r}") from None
    if value != int(value):
        raise argparse.ArgumentTypeError(f"a token count must be a whole number, got {text!r}")
    return int(value)


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
        "--tokens", type=token_count, required=True, help="activation rows (tokens) to cache, e.g. 200k or 1M"
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
    p.add_argument("--shard-tokens", type=token_count, default=65536, help="rows per shard")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--keep-bos", action="store_true", help="keep BOS positions (dropped by default)")
    p.add_argument("--exclude-special", action="store_true", help="drop every special-token position")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--overwrite", action="store_true", help="delete an existing cache in --out first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.activations.writer import build_cache
    from saekit.data import iter_texts, load_corpus, load_text_dataset, pack_tokens_with_docs
    from saekit.errors import ConfigError
    from saekit.models import load_model
    from saekit.progress import status

    hookpoints = list(args.hookpoints)
    for layer in args.transcoder_layer:
        hookpoints += list(transcoder_hookpoints(layer))
    if not hookpoints:
        raise ConfigError("give at least one hookpoint with --hookpoints or --transcoder-layer.")
    if args.tokens <= 0:
        raise ConfigError(f"--tokens must be a positive integer, got {args.tokens}.")
    status(f"loading model {args.model} and tokenizing the text...")
    handle = load_model(args.model, device=args.device)
    n_ctx = args.n_ctx
    if n_ctx is None:
        cfg = getattr(handle.model, "cfg", None)
        n_ctx = min(int(getattr(cfg, "n_ctx", 128)), 1024) if cfg is not None else 128
    docs = (
        iter_texts(load_text_dataset(args.dataset, args.split, args.text_column), args.text_column)
        if args.dataset
        else (load_corpus(args.split))
    )
    # only tokenize what is needed: (n_ctx - 1) kept tokens per row after dropping BOS, plus slack
    # for excluded special tokens
    has_bos = getattr(handle.tokenizer, "bos_token_id", None) is not None
    if not has_bos:  # e.g. BERT-style tokenizers: rows start with text, and no position is dropped
        print("saekit cache: the tokenizer has no BOS token: rows are packed without one.", file=sys.stderr)
    per_row = n_ctx - (0 if args.keep_bos or not has_bos else 1)
    rows = math.ceil(args.tokens / max(per_row, 1) * (1.25 if args.exclude_special else 1.0)) + 1
    tokens, doc_ids = pack_tokens_with_docs(docs, handle.tokenizer, n_ctx, bos=has_bos, max_rows=rows)
    out = build_cache(
        handle,
        tokens,
        list(dict.fromkeys(hookpoints)),
        args.out,
        doc_ids=doc_ids,
        n_tokens=args.tokens,
        dtype=args.dtype,
        shard_tokens=args.shard_tokens,
        batch_size=args.batch_size,
        drop_bos=has_bos and not args.keep_bos,
        exclude_special=args.exclude_special,
        overwrite=args.overwrite,
    )
    print(f"cached {args.tokens} tokens at {len(hookpoints)} hookpoint(s) in {out}")
    return 0
