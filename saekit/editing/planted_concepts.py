"""Concept sets from the ground-truth labels of a planted language (saekit.data.planted).

``planted_concept("planted:small", "in_bracket", ...)``: fresh rows of the language; a concept position
is a position whose next token carries label L (so the concept's continuations are exactly the
tokens labelled L), a control position one whose next token is a real token without L. Concept and
control positions come from the same rows: the two sides differ in the label only, not in the text.
On the command line: ``--concept planted:SPEC:LABEL`` (e.g. ``planted:small:in_bracket``).
"""

from __future__ import annotations

import torch

from saekit.editing.concepts import ConceptSet
from saekit.errors import ConfigError, DataError


def planted_concept(
    spec: str, label: str, n_rows: int = 64, n_ctx: int = 64, seed: int = 0, tokenizer=None
) -> ConceptSet:
    """Positions followed by a token carrying ``label`` against positions followed by any other real token.

    tokenizer: the model's; when given it must be the planted language's (same vocabulary), else one sentence.
    """
    from saekit.data.planted import planted_language

    lang = planted_language(spec)
    if label not in lang.label_names:
        raise DataError(
            f"planted language {spec!r} has no label {label!r}; it has e.g. {', '.join(lang.label_names[:6])}, "
            f"in_bracket, induction."
        )
    if n_ctx < 2 or n_rows < 1:
        raise ConfigError(f"a planted concept needs n_ctx ≥ 2 and n_rows ≥ 1, got n_ctx {n_ctx}, n_rows {n_rows}.")
    if tokenizer is not None and tokenizer.get_vocab() != {w: i for i, w in enumerate(lang.words)}:
        raise DataError(
            f"the model's tokenizer is not the planted language {spec!r}'s; a planted concept needs a model trained "
            f"with --dataset planted:{spec.removeprefix('planted:')}."
        )
    tokens, labels = lang.rows(n_rows, n_ctx, seed=seed)
    nxt = tokens[:, 1:]
    real = (nxt != lang.bos) & (nxt != lang.eos)
    has = labels[:, 1:, lang.label_names.index(label)]
    last = torch.zeros(tokens.shape[0], 1, dtype=torch.bool)  # the last position has no next token
    concept_mask = torch.cat([has & real, last], 1)
    control_mask = torch.cat([~has & real, last], 1)
    return ConceptSet(tokens, concept_mask, tokens.clone(), control_mask, name=f"planted {label}")


def concept_from_planted_spec(arg: str, tokenizer, n_ctx: int, max_texts: int | None = None) -> ConceptSet:
    """``SPEC:LABEL`` from ``--concept planted:SPEC:LABEL`` (rows: ``max_texts``, default 64)."""
    spec, _, label = arg.partition(":")
    if not spec or not label:
        raise ConfigError(f"planted concept {arg!r} must read SPEC:LABEL, e.g. planted:small:in_bracket.")
    return planted_concept(spec, label, n_rows=max_texts or 64, n_ctx=n_ctx, tokenizer=tokenizer)
