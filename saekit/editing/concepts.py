"""Concept sets: concept text against control text, tokenised into contexts with position masks.

A *concept position* is a position whose next token belongs to the concept: localisation reads the
activations there, ablation measures the log-probability of those next tokens (the concept's
continuations). Control positions are every position of the control text that has a next token.
Sources: plain texts (files, Hugging Face datasets through saekit.data) or built-in definitions on
the Shakespeare corpus (the speeches of one character against everyone else's; the places where a
word family comes next against lines without it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from saekit.errors import ConfigError, DataError

SPEAKER = re.compile(r"^([A-Z][A-Z' ]+[A-Z])\.$")  # "IAGO." alone on a line opens a speech


@dataclass
class ConceptSet:
    """Token contexts [n, n_ctx] of concept and control text with the positions that count."""

    concept_tokens: torch.Tensor
    concept_mask: torch.Tensor  # bool [n, n_ctx]: next token is a concept continuation
    control_tokens: torch.Tensor
    control_mask: torch.Tensor  # bool [m, n_ctx]: positions with a next token
    name: str = "concept"
    targets: list[int] = field(default_factory=list)  # the concept's continuation tokens (for steering)

    def __post_init__(self) -> None:
        if int(self.concept_mask.sum()) == 0:
            raise DataError(f"concept set {self.name!r} has no concept token; give concept text that is not empty.")
        if int(self.control_mask.sum()) == 0:
            raise DataError(f"concept set {self.name!r} has no control token; give control text that is not empty.")
        if not self.targets:
            self.targets = distinctive_continuations(self)


def _next_tokens(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return tokens[:, 1:][mask[:, :-1]]


def distinctive_continuations(cs: ConceptSet, top: int = 10, ratio: float = 5.0) -> list[int]:
    """Tokens that follow concept positions at least ``ratio`` times as often as control positions
    (the most frequent ``top``); the most frequent concept continuation if none is that distinctive."""
    vocab = int(max(cs.concept_tokens.max(), cs.control_tokens.max())) + 1
    fc = torch.bincount(_next_tokens(cs.concept_tokens, cs.concept_mask), minlength=vocab).double()
    fk = torch.bincount(_next_tokens(cs.control_tokens, cs.control_mask), minlength=vocab).double()
    pc, pk = fc / fc.sum(), (fk + 1) / (fk.sum() + vocab)
    order = torch.argsort(fc, descending=True, stable=True)
    picked = [int(t) for t in order if fc[t] > 0 and pc[t] >= ratio * pk[t]][:top]
    return picked or [int(order[0])]


def encode_spans(
    texts: Iterable[str], tokenizer, n_ctx: int, spans: list[list[tuple[int, int]]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text as BOS + tokens cut into rows of n_ctx (padded); mask = positions whose next token
    is a real token (with ``spans``: whose next token starts inside one of the text's char spans)."""
    if n_ctx < 2:
        raise ConfigError(f"n_ctx must be at least 2, got {n_ctx}.")
    bos = tokenizer.bos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows, masks = [], []
    for i, text in enumerate(texts):
        if not text.strip():
            continue  # blank text holds no concept and no control
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=spans is not None)
        ids = list(enc["input_ids"])
        if spans is None:
            wanted = [True] * len(ids)
        else:
            wanted = [any(s <= a < max(e, s + 1) or a <= s < b for a, b in spans[i]) for s, e in enc["offset_mapping"]]
        if bos is not None:
            ids, wanted = [bos, *ids], [False, *wanted]
        for start in range(0, max(1, len(ids) - 1), n_ctx - 1):  # one token of overlap: every next token counted once
            chunk, want = ids[start : start + n_ctx], wanted[start : start + n_ctx]
            if len(chunk) < 2:
                continue
            m = want[1:] + [False]
            rows.append(chunk + [pad] * (n_ctx - len(chunk)))
            masks.append(m + [False] * (n_ctx - len(m)))
    if not rows:
        return torch.zeros(0, n_ctx, dtype=torch.long), torch.zeros(0, n_ctx, dtype=torch.bool)
    return torch.tensor(rows), torch.tensor(masks)


def concept_from_texts(
    concept: Iterable[str], control: Iterable[str], tokenizer, n_ctx: int, name: str = "concept"
) -> ConceptSet:
    """Every token of the concept texts is a concept continuation; every token of the control texts is control."""
    ct, cm = encode_spans(list(concept), tokenizer, n_ctx)
    kt, km = encode_spans(list(control), tokenizer, n_ctx)
    return ConceptSet(ct, cm, kt, km, name=name)


def concept_from_pattern(
    texts: Iterable[str], pattern: str, tokenizer, n_ctx: int, name: str | None = None, flags: int = 0
) -> ConceptSet:
    """Texts with a match of regex ``pattern`` are concept text, the tokens that start a match its
    continuations; texts without a match are the control."""
    rx = re.compile(pattern, flags)
    hit, spans, miss = [], [], []
    for t in texts:
        found = [(m.start(), m.end()) for m in rx.finditer(t) if m.end() > m.start()]
        if found:
            hit.append(t)
            spans.append([(a, a + 1) for a, _ in found])  # the token holding the match's first char
        else:
            miss.append(t)
    ct, cm = encode_spans(hit, tokenizer, n_ctx, spans)
    kt, km = encode_spans(miss, tokenizer, n_ctx)
    return ConceptSet(ct, cm, kt, km, name=name or f"pattern {pattern!r}")


def speeches(split: str = "train") -> list[tuple[str, str]]:
    """(speaker, speech text) of every speech in the built-in corpus's plays."""
    from saekit.data import load_corpus

    out = []
    for doc in load_corpus(split):
        for block in doc.split("\n\n"):
            head, _, body = block.strip().partition("\n")
            m = SPEAKER.match(head.strip())
            if m and body.strip():
                out.append((m.group(1), body.strip()))
    return out


def character_concept(
    character: str, tokenizer, n_ctx: int, split: str = "train", max_texts: int | None = 400
) -> ConceptSet:
    """Lines spoken by ``character`` (e.g. "IAGO", any case) against lines spoken by everyone else
    (speeches open with the speaker's name in capitals on its own line)."""
    all_speeches = speeches(split)
    who = character.upper().rstrip(".")
    mine = [s for c, s in all_speeches if c == who]
    if not mine:
        known = sorted({c for c, _ in all_speeches})
        raise DataError(f"no speech by {character!r} in the corpus's {split} split; speakers include {', '.join(known[:8])}.")
    others = [s for c, s in all_speeches if c != who]
    if max_texts is not None:
        mine, others = mine[:max_texts], others[:: max(1, len(others) // max_texts)][:max_texts]
    return concept_from_texts(mine, others, tokenizer, n_ctx, name=f"character {who}")


def word_family_concept(
    words: str, tokenizer, n_ctx: int, split: str = "train", max_texts: int | None = 2000
) -> ConceptSet:
    """Positions where a word of the family comes next (regex alternatives, e.g. "love|loves|loved|lover"),
    against corpus lines without it."""
    from saekit.data import load_corpus

    lines = [ln.strip() for doc in load_corpus(split) for ln in doc.split("\n") if len(ln.strip()) > 20]
    pattern = rf"(?<![A-Za-z])(?:{words})(?![A-Za-z])"
    rx = re.compile(pattern, re.IGNORECASE)
    hit = [ln for ln in lines if rx.search(ln)]
    miss = [ln for ln in lines if not rx.search(ln)]
    if max_texts is not None:
        hit, miss = hit[:max_texts], miss[:: max(1, len(miss) // max_texts)][:max_texts]
    return concept_from_pattern(hit + miss, pattern, tokenizer, n_ctx, name=f"words {words}", flags=re.IGNORECASE)


def read_texts(source: str, text_column: str = "text", max_texts: int | None = None) -> list[str]:
    """Texts from a file (.txt: one text per blank-line separated paragraph), a folder or data file
    Hugging Face datasets reads, or a Hub dataset name (through saekit.data)."""
    p = Path(source)
    if p.suffix == ".txt" and p.is_file():
        texts = [b.strip() for b in p.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    else:
        from saekit.data import iter_texts, load_text_dataset

        texts = []
        for t in iter_texts(load_text_dataset(source, text_column=text_column), text_column):
            if isinstance(t, str) and t.strip():
                texts.append(t)
            if max_texts is not None and len(texts) >= max_texts:
                break
    if not texts:
        raise DataError(f"{source} holds no text; expected non-empty texts for a concept or control set.")
    return texts[:max_texts] if max_texts is not None else texts
