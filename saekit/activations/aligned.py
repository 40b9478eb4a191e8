"""Aligned activation readers for crosscoders: the same token rows from several models.

A crosscoder reads row i of every model's activations as the same token. Caches written from
the same token list hold the same ``token_ids`` in the same order, and readers opened with the
same seed and layout then serve their rows in the same shuffled order. ``check_aligned``
refuses readers for which that does not hold, naming the first difference; ``check_batch_tokens``
compares the token ids of the batch each reader served last (when they read them).
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.errors import DataError

# reader settings that decide the shuffled order: they must agree across sources
_ORDER_KEYS = ("seed", "fill_tokens", "chunk_tokens", "buffer_tokens", "refill_tokens")


def check_aligned(readers: dict[str, Any]) -> None:
    """Raise DataError unless every reader serves the same token rows in the same order."""
    names = list(readers)
    first = readers[names[0]]
    for name in names[1:]:
        other = readers[name]
        if type(other) is not type(first):
            raise DataError(
                f"crosscoder sources {names[0]!r} and {name!r} are a {type(first).__name__} and a "
                f"{type(other).__name__}; use one kind of reader for every model."
            )
        for key in _ORDER_KEYS:
            a, b = getattr(first, key, None), getattr(other, key, None)
            if a != b:
                raise DataError(
                    f"crosscoder sources {names[0]!r} and {name!r} are read with {key}={a} and {key}={b}; "
                    "open every reader with the same seed and buffer settings so rows stay aligned."
                )
        if hasattr(first, "manifest") and hasattr(other, "manifest"):
            _check_caches(names[0], first, name, other)


def _check_caches(name_a: str, a: Any, name_b: str, b: Any) -> None:
    sizes_a = [int(s["n_tokens"]) for s in a.manifest["shards"]]
    sizes_b = [int(s["n_tokens"]) for s in b.manifest["shards"]]
    ids_a, ids_b = a.read_all("token_ids"), b.read_all("token_ids")
    if ids_a.shape != ids_b.shape:
        raise DataError(
            f"caches {a.path} ({name_a!r}) and {b.path} ({name_b!r}) hold {ids_a.numel()} and {ids_b.numel()} "
            "tokens; a crosscoder needs caches written from the same token list."
        )
    diff = (ids_a != ids_b).nonzero()
    if diff.numel():
        i = int(diff[0, 0])
        raise DataError(
            f"caches {a.path} ({name_a!r}) and {b.path} ({name_b!r}) differ at row {i}: token id "
            f"{int(ids_a[i])} vs {int(ids_b[i])}; a crosscoder needs caches written from the same token list."
        )
    if sizes_a != sizes_b:
        raise DataError(
            f"caches {a.path} ({name_a!r}) and {b.path} ({name_b!r}) hold the same tokens in differently "
            "sized shards, so their shuffled orders differ; write them with the same shard size."
        )


def check_batch_tokens(readers: dict[str, Any]) -> None:
    """Compare the token ids of the last batch of every reader that recorded them."""
    metas = {n: getattr(r, "last_meta", None) for n, r in readers.items()}
    metas = {n: m["token_ids"] for n, m in metas.items() if m is not None and "token_ids" in m}
    if len(metas) < 2:
        return
    names = list(metas)
    ref = metas[names[0]]
    for name in names[1:]:
        ids = metas[name]
        if ids.shape != ref.shape or not torch.equal(ids, ref):
            n = min(ids.numel(), ref.numel())
            bad = (ids[:n] != ref[:n]).nonzero()
            i = int(bad[0, 0]) if bad.numel() else n
            raise DataError(
                f"crosscoder sources {names[0]!r} and {name!r} served different tokens at row {i} of a batch; "
                "read every model over the same tokens with the same seed and buffer settings."
            )
