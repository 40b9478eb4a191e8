"""A concept set named on the command line (``--concept SPEC``): one dispatcher over the built-in,
text-source and planted concept sets."""

from __future__ import annotations

from saekit.editing.concepts import (
    ConceptSet,
    character_concept,
    concept_from_texts,
    encode_spans,
    read_texts,
    word_family_concept,
)
from saekit.editing.planted_concepts import concept_from_planted_spec
from saekit.errors import ConfigError


def concept_from_spec(
    concept: str, tokenizer, n_ctx: int, control: str | None = None, split: str = "train", max_texts: int | None = 400
) -> ConceptSet:
    """A concept set named on the command line: ``character:NAME``, ``words:REGEX`` (control: the rest
    of the corpus unless ``control`` is given), ``planted:SPEC:LABEL`` (saekit.editing.planted_concepts;
    ``max_texts`` rows), or a text source (file, folder, dataset) with a
    ``control`` text source."""
    kind, _, arg = concept.partition(":")
    if kind == "planted":
        if control is not None:
            raise ConfigError("a planted:SPEC:LABEL concept brings its own control (tokens without the label); drop --control.")
        return concept_from_planted_spec(arg, tokenizer, n_ctx, max_texts)
    if control is None and kind == "character":
        return character_concept(arg, tokenizer, n_ctx, split, max_texts)
    if control is None and kind == "words":
        return word_family_concept(arg, tokenizer, n_ctx, split, max_texts)
    if control is None:
        raise ConfigError(
            f"concept {concept!r} needs a control text source (--control), or use character:NAME or words:REGEX."
        )
    if kind in ("character", "words"):
        built = concept_from_spec(concept, tokenizer, n_ctx, None, split, max_texts)
        ctrl = read_texts(control, max_texts=max_texts)
        kt, km = encode_spans(ctrl, tokenizer, n_ctx)
        return ConceptSet(built.concept_tokens, built.concept_mask, kt, km, name=built.name)
    return concept_from_texts(
        read_texts(concept, max_texts=max_texts), read_texts(control, max_texts=max_texts), tokenizer, n_ctx, name=concept
    )
