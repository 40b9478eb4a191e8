"""Planted-feature languages: seeded token sequences from a known latent process, with the
ground-truth labels of every token kept beside the tokens.

A document has a topic and a sub-topic under it (hierarchical). It is a run of units:
- a clause `det NOUN gap… VERB det WORD`: the verb agrees in number with the subject noun
  across a gap of 0–4 words; the gap tokens carry `pending_sg` / `pending_pl`;
- a bracketed span `( w w … )`: the tokens inside carry `in_bracket`;
- a phrase of 3–5 content words, which with some probability repeats an earlier phrase of
  the document verbatim: its tokens after the first carry `induction`.
Content words come from the document's sub-topic (mostly), its topic's other sub-topics, or
function-word classes; every function word is followed by its class's particle.

Labels come in two kinds. Token-level labels are functions of the current token (its word
class: determiner, each function-word class, particle, noun number, verb, each topic's words,
brackets); every class has a future of its own, so a model has a reason to represent it.
Contextual labels need the context: the document topic, the sub-topic, in_bracket,
pending_sg/pl, induction. Named specs: `small` (vocabulary 532, 66 labels) and `default`
(vocabulary 944, 90 labels).
Use as `saekit model train --dataset planted:NAME`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import torch

from saekit.errors import DataError

SPECIAL = ("<|bos|>", "<|eos|>", "<|pad|>")
PREFIX = "planted:"


@dataclass(frozen=True)
class PlantedSpec:
    name: str
    n_topics: int = 8
    n_subtopics: int = 3
    words_per_subtopic: int = 8
    n_function_classes: int = 16  # class 0 is the determiner
    words_per_function_class: int = 8
    n_nouns: int = 64  # each in a singular and a plural form
    n_verbs: int = 32
    doc_units: tuple[int, int] = (6, 14)
    p_bracket: float = 0.2
    p_phrase: float = 0.3
    p_repeat: float = 0.5
    p_subtopic_word: float = 0.75  # vs another sub-topic of the same topic
    p_function_word: float = 0.35


SPECS = {
    "small": PlantedSpec("small"),
    "default": PlantedSpec("default", n_topics=12, words_per_subtopic=12, n_function_classes=20, words_per_function_class=10,
                           n_nouns=96, n_verbs=48),
}


def get_spec(name: str) -> PlantedSpec:
    name = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if name not in SPECS:
        raise DataError(f"planted language {name!r} is not known; expected one of {', '.join(sorted(SPECS))}.")
    return SPECS[name]


class PlantedLanguage:
    """Vocabulary, label names and the seeded generator of one planted spec."""

    def __init__(self, spec: PlantedSpec) -> None:
        self.spec = spec
        s = spec
        words = list(SPECIAL) + ["(", ")"]
        self.fn_words = [[self._add(words, f"f{c}_{i}") for i in range(s.words_per_function_class)] for c in range(s.n_function_classes)]
        self.nouns = [[self._add(words, f"n{i}_{num}") for i in range(s.n_nouns)] for num in ("sg", "pl")]
        self.verbs = [[self._add(words, f"v{i}_{num}") for i in range(s.n_verbs)] for num in ("sg", "pl")]
        self.topic_words = [
            [[self._add(words, f"t{t}_{u}_{i}") for i in range(s.words_per_subtopic)] for u in range(s.n_subtopics)]
            for t in range(s.n_topics)
        ]
        # every function class has its own particle, which follows each of its words: a class has a
        # future of its own (without one the classes are interchangeable and no model separates them)
        self.particles = [self._add(words, f"p{c}") for c in range(1, s.n_function_classes)]
        self.words = words
        self._fn_class = {w: c for c, ids in enumerate(self.fn_words) if c > 0 for w in ids}
        self.bos, self.eos, self.open, self.close = 0, 1, 3, 4
        # the verb's number has no future (its object does not agree), so only "verb" is a token class
        self.token_labels = ["open_bracket", "close_bracket", "noun_sg", "noun_pl", "verb", "determiner"]
        self.token_labels += [f"function_{c}" for c in range(1, s.n_function_classes)] + ["particle"]
        self.token_labels += [f"topic_word_{t}" for t in range(s.n_topics)]
        self.context_labels = [f"topic_{t}" for t in range(s.n_topics)]
        self.context_labels += [f"subtopic_{t}_{u}" for t in range(s.n_topics) for u in range(s.n_subtopics)]
        self.context_labels += ["in_bracket", "pending_sg", "pending_pl", "induction"]
        self.label_names = self.token_labels + self.context_labels
        self._index = {n: i for i, n in enumerate(self.label_names)}
        self.token_class = torch.full((len(words),), -1, dtype=torch.long)  # token id -> token-level label
        self._set_class([self.open], "open_bracket")
        self._set_class([self.close], "close_bracket")
        for num, name in enumerate(("sg", "pl")):
            self._set_class(self.nouns[num], f"noun_{name}")
            self._set_class(self.verbs[num], "verb")
        self._set_class(self.fn_words[0], "determiner")
        for c, ids in enumerate(self.fn_words[1:], start=1):
            self._set_class(ids, f"function_{c}")
        self._set_class(self.particles, "particle")
        for t, subs in enumerate(self.topic_words):
            self._set_class([w for sub in subs for w in sub], f"topic_word_{t}")

    @staticmethod
    def _add(words: list[str], word: str) -> int:
        words.append(word)
        return len(words) - 1

    def _set_class(self, ids: list[int], label: str) -> None:
        self.token_class[ids] = self._index[label]

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def is_contextual(self) -> torch.Tensor:
        return torch.tensor([n in self.context_labels for n in self.label_names])

    @cached_property
    def tokenizer(self):
        """A Hugging Face word-level tokenizer over the planted vocabulary (saved with models)."""
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(self.words)}, unk_token=SPECIAL[2]))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL[0], eos_token=SPECIAL[1], pad_token=SPECIAL[2])

    # -- generation ---------------------------------------------------------------------------
    def document(self, rng: random.Random) -> tuple[list[int], list[list[str]]]:
        """One document: tokens and, per token, its contextual label names (token-level labels
        follow from the token)."""
        s = self.spec
        topic, sub = rng.randrange(s.n_topics), rng.randrange(s.n_subtopics)
        base = [f"topic_{topic}", f"subtopic_{topic}_{sub}"]
        toks: list[int] = []
        ctx: list[list[str]] = []
        phrases: list[list[int]] = []

        def emit(token: int, *extra: str) -> None:
            toks.append(token)
            ctx.append(base + list(extra))
            c = self._fn_class.get(token)
            if c is not None:  # a function word's particle carries the same contextual labels
                toks.append(self.particles[c - 1])
                ctx.append(base + list(extra))

        for _ in range(rng.randint(*s.doc_units)):
            r = rng.random()
            if r < s.p_bracket:
                emit(self.open)
                for _ in range(rng.randint(1, 5)):
                    emit(self._content(rng, topic, sub), "in_bracket")
                emit(self.close)
            elif r < s.p_bracket + s.p_phrase:
                if phrases and rng.random() < s.p_repeat:
                    phrase = rng.choice(phrases)
                    emit(phrase[0])
                    for w in phrase[1:]:
                        emit(w, "induction")
                else:
                    phrase = [self._content(rng, topic, sub) for _ in range(rng.randint(3, 5))]
                    phrases.append(phrase)
                    for w in phrase:
                        emit(w)
            else:
                self._clause(rng, topic, sub, emit)
        return toks, ctx

    def _content(self, rng: random.Random, topic: int, sub: int) -> int:
        """A content word: a function word (class 1..) or a word of the document's topic, mostly
        of its sub-topic."""
        s = self.spec
        if rng.random() < s.p_function_word:
            return rng.choice(rng.choice(self.fn_words[1:]))
        if rng.random() >= s.p_subtopic_word and s.n_subtopics > 1:
            sub = rng.choice([u for u in range(s.n_subtopics) if u != sub])
        return rng.choice(self.topic_words[topic][sub])

    def _clause(self, rng: random.Random, topic: int, sub: int, emit) -> None:
        num = rng.randrange(2)
        pending = "pending_pl" if num else "pending_sg"
        emit(rng.choice(self.fn_words[0]))  # determiner class
        emit(rng.choice(self.nouns[num]))
        for _ in range(rng.randint(0, 4)):  # no gap: the noun's number shows in the next token
            emit(self._content(rng, topic, sub), pending)
        emit(rng.choice(self.verbs[num]))
        emit(rng.choice(self.fn_words[0]))
        emit(self._content(rng, topic, sub))

    def documents(self, n_docs: int, seed: int = 0) -> list[tuple[list[int], list[list[str]]]]:
        rng = random.Random(seed)
        return [self.document(rng) for _ in range(n_docs)]

    def label_matrix(self, toks: list[int], ctx: list[list[str]]) -> torch.Tensor:
        """Binary labels [len(toks), n_labels] of one document."""
        return self._labels(torch.tensor(toks, dtype=torch.long), [ctx])

    def _labels(self, toks: torch.Tensor, ctxs: list[list[list[str]]]) -> torch.Tensor:
        out = torch.zeros(len(toks), len(self.label_names), dtype=torch.bool)
        classes = self.token_class[toks]
        rows = torch.nonzero(classes >= 0).flatten()
        out[rows, classes[rows]] = True
        pos, cols = [], []
        for i, names in enumerate(names for ctx in ctxs for names in ctx):
            pos += [i] * len(names)
            cols += [self._index[n] for n in names]
        out[pos, cols] = True
        return out

    def rows(self, n_rows: int, n_ctx: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [n_rows, n_ctx], labels [n_rows, n_ctx, n_labels]) packed as saekit packs text:
        BOS first in every row, documents joined by EOS (BOS and EOS carry no label)."""
        rng = random.Random(seed)
        body = n_ctx - 1
        ids: list[int] = []
        ctxs: list[list[list[str]]] = []
        while len(ids) < n_rows * body:
            toks, ctx = self.document(rng)
            ids += toks + [self.eos]
            ctxs.append(ctx + [[]])
        flat = torch.tensor(ids[: n_rows * body], dtype=torch.long)
        labels = self._labels(torch.tensor(ids, dtype=torch.long), ctxs)[: n_rows * body]
        labels[flat == self.eos] = False
        tokens = torch.cat([torch.full((n_rows, 1), self.bos), flat.view(n_rows, body)], 1)
        empty = torch.zeros(n_rows, 1, len(self.label_names), dtype=torch.bool)
        return tokens, torch.cat([empty, labels.view(n_rows, body, -1)], 1)


def planted_language(name: str) -> PlantedLanguage:
    return PlantedLanguage(get_spec(name))


def planted_documents(name: str, n_docs: int = 6000, seed: int = 0) -> list[list[int]]:
    """Token-id documents of a planted language (what `--dataset planted:NAME` trains on)."""
    return [toks for toks, _ in planted_language(name).documents(n_docs, seed)]
