"""Concept sets from a planted language's ground-truth labels (saekit.editing.planted_concepts)."""

from __future__ import annotations

import pytest
import torch

from saekit.data import default_tokenizer
from saekit.data.planted import planted_language
from saekit.editing import planted_concept
from saekit.editing.concept_spec import concept_from_spec
from saekit.errors import ConfigError, DataError

N_ROWS, N_CTX = 24, 32


def _inside_brackets(stream: list[int], lang) -> list[bool]:
    """By hand from the token stream: tokens strictly between '(' and ')'."""
    inside, out = False, []
    for t in stream:
        if t == lang.open:
            out.append(False)
            inside = True
        elif t == lang.close:
            out.append(False)
            inside = False
        else:
            out.append(inside and t not in (lang.bos, lang.eos))
    return out


def test_in_bracket_concept_marks_the_positions_before_bracketed_tokens():
    lang = planted_language("planted:small")
    cs = planted_concept("planted:small", "in_bracket", n_rows=N_ROWS, n_ctx=N_CTX, tokenizer=lang.tokenizer)
    tokens = cs.concept_tokens
    assert tokens.shape == (N_ROWS, N_CTX) and torch.equal(tokens, cs.control_tokens)
    # rows are consecutive slices of one token stream (BOS in front of each): scan it for brackets
    stream = tokens[:, 1:].reshape(-1).tolist()
    want = torch.tensor(_inside_brackets(stream, lang)).view(N_ROWS, N_CTX - 1)
    assert torch.equal(cs.concept_mask[:, :-1], want) and want.sum() > 20
    real = (tokens[:, 1:] != lang.bos) & (tokens[:, 1:] != lang.eos)
    assert torch.equal(cs.control_mask[:, :-1], real & ~want)  # control: every other real next token
    assert not cs.concept_mask[:, -1].any() and not cs.control_mask[:, -1].any()


def test_token_level_label_continuations_are_exactly_its_tokens():
    lang = planted_language("small")
    cs = planted_concept("small", "open_bracket", n_rows=N_ROWS, n_ctx=N_CTX)
    nxt = cs.concept_tokens[:, 1:][cs.concept_mask[:, :-1]]
    assert nxt.numel() > 5 and (nxt == lang.open).all()
    assert cs.targets == [lang.open]  # the concept's only (and distinctive) continuation
    # through the command-line spec, rows = max_texts
    via_spec = concept_from_spec("planted:small:open_bracket", lang.tokenizer, N_CTX, max_texts=N_ROWS)
    assert torch.equal(via_spec.concept_mask, cs.concept_mask) and via_spec.name == "planted open_bracket"


def test_bad_planted_concepts_fail_with_one_sentence():
    lang = planted_language("small")
    with pytest.raises(DataError, match="has no label 'nope'"):
        planted_concept("small", "nope")
    with pytest.raises(DataError, match="tokenizer is not the planted language"):
        concept_from_spec("planted:small:in_bracket", default_tokenizer(), N_CTX)
    with pytest.raises(ConfigError, match="must read SPEC:LABEL"):
        concept_from_spec("planted:small", lang.tokenizer, N_CTX)
    with pytest.raises(ConfigError, match="brings its own control"):
        concept_from_spec("planted:small:in_bracket", lang.tokenizer, N_CTX, control="x.txt")
    with pytest.raises(DataError, match="planted language 'huge' is not known"):
        planted_concept("huge", "in_bracket")
