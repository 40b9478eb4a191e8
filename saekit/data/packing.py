"""Packing documents into fixed-length contexts.

Documents are concatenated with EOS between them and cut into rows of n_ctx tokens; with
bos=True every row starts with BOS (so it holds n_ctx - 1 text tokens). Pre-tokenized
documents (lists of ids) are taken as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from saekit.errors import ConfigError, DataError


def _encode(doc: str | list[int], tokenizer) -> list[int]:
    if isinstance(doc, str):
        return tokenizer(doc, add_special_tokens=False)["input_ids"]
    return [int(t) for t in doc]


def pack_tokens_with_docs(
    docs: Iterable[str | list[int]],
    tokenizer,
    n_ctx: int,
    bos: bool = True,
    max_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack documents into (tokens, doc_ids), both LongTensor [n_rows, n_ctx].

    doc_ids holds the index of the source document of every token (-1 for BOS), so later
    stages can show each activation's context.
    """
    if n_ctx < 2:
        raise ConfigError(f"n_ctx must be at least 2, got {n_ctx}.")
    body = n_ctx - 1 if bos else n_ctx
    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos and bos_id is None:
        raise ConfigError("the tokenizer has no BOS token; pack with bos=False or use a tokenizer with one.")
    ids: list[int] = []
    owners: list[int] = []
    rows_t: list[torch.Tensor] = []
    rows_d: list[torch.Tensor] = []
    n_docs = 0
    for doc_index, doc in enumerate(docs):
        toks = _encode(doc, tokenizer)
        if not toks:
            continue
        n_docs += 1
        if eos_id is not None:
            toks = toks + [eos_id]
        ids.extend(toks)
        owners.extend([doc_index] * len(toks))
        while len(ids) >= body:
            rows_t.append(torch.tensor(([bos_id] if bos else []) + ids[:body]))
            rows_d.append(torch.tensor(([-1] if bos else []) + owners[:body]))
            del ids[:body], owners[:body]
            if max_rows is not None and len(rows_t) >= max_rows:
                return torch.stack(rows_t), torch.stack(rows_d)
    if n_docs == 0:
        raise DataError("the corpus is empty: no document produced any token.")
    if not rows_t:
        raise DataError(f"the corpus has fewer tokens ({len(ids)}) than one context of {body}; use a smaller n_ctx.")
    return torch.stack(rows_t), torch.stack(rows_d)


def pack_tokens(
    docs: Iterable[str | list[int]], tokenizer, n_ctx: int, bos: bool = True, max_rows: int | None = None
) -> torch.Tensor:
    """Pack documents into a LongTensor [n_rows, n_ctx] of token ids (see module doc)."""
    return pack_tokens_with_docs(docs, tokenizer, n_ctx, bos, max_rows)[0]
