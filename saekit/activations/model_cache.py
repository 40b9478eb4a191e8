"""Caching a model's activations over text in one call (what ``saekit cache`` runs): load the
model, pack the built-in corpus or a dataset into rows of its context length, only as many as
the requested tokens need, and write the cache with ``build_cache``.

    cache_model_activations("runs/models/baseline", ["blocks.1.hook_resid_post"], "runs/cache", 1_000_000)
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from saekit.activations.hookpoints import transcoder_hookpoints
from saekit.activations.read import default_n_ctx
from saekit.activations.writer import build_cache
from saekit.errors import ConfigError


def cache_model_activations(
    model: str | Path,
    hookpoints: list[str],
    out: str | Path,
    n_tokens: int,
    *,
    transcoder_layers: list[int] = (),
    dataset: str | None = None,
    split: str = "train",
    text_column: str = "text",
    n_ctx: int | None = None,
    keep_bos: bool = False,
    exclude_special: bool = False,
    device: str = "auto",
    **build: Any,
) -> tuple[Path, list[str]]:
    """Cache ``n_tokens`` rows of ``model``'s activations at ``hookpoints`` (plus the MLP
    input/output pair of each of ``transcoder_layers``) into ``out``; ``build`` goes to
    ``build_cache`` (dtype, shard_tokens, batch_size, overwrite). Returns (folder, hookpoints)."""
    from saekit.data import iter_texts, load_corpus, load_text_dataset, pack_tokens_with_docs
    from saekit.models import load_model
    from saekit.progress import status

    hookpoints = list(hookpoints)
    for layer in transcoder_layers:
        hookpoints += list(transcoder_hookpoints(layer))
    if not hookpoints:
        raise ConfigError("give at least one hookpoint with --hookpoints or --transcoder-layer.")
    if n_tokens <= 0:
        raise ConfigError(f"--tokens must be a positive integer, got {n_tokens}.")
    status(f"loading model {model} and tokenizing the text...")
    handle = load_model(model, device=device)
    n_ctx = default_n_ctx(handle, n_ctx)  # the model's own (a Hugging Face model's too), at most 1024
    docs = iter_texts(load_text_dataset(dataset, split, text_column), text_column) if dataset else load_corpus(split)
    # only tokenize what is needed: (n_ctx - 1) kept tokens per row after dropping BOS, plus slack
    # for excluded special tokens
    has_bos = getattr(handle.tokenizer, "bos_token_id", None) is not None
    if not has_bos:  # e.g. BERT-style tokenizers: rows start with text, and no position is dropped
        print("saekit cache: the tokenizer has no BOS token: rows are packed without one.", file=sys.stderr)
    per_row = n_ctx - (0 if keep_bos or not has_bos else 1)
    rows = math.ceil(n_tokens / max(per_row, 1) * (1.25 if exclude_special else 1.0)) + 1
    tokens, doc_ids = pack_tokens_with_docs(docs, handle.tokenizer, n_ctx, bos=has_bos, max_rows=rows)
    hookpoints = list(dict.fromkeys(hookpoints))
    folder = build_cache(
        handle, tokens, hookpoints, out, doc_ids=doc_ids, n_tokens=n_tokens,
        drop_bos=has_bos and not keep_bos, exclude_special=exclude_special, **build,
    )  # fmt: skip
    return folder, hookpoints
