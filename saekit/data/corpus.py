"""The built-in corpus: Shakespeare's plays and poems (modern spelling, Project Gutenberg texts).

Shipped compressed inside the package so everything runs offline; provenance in docs/data.md.
The train/validation split is by document and fixed: every 10th document (sorted by id,
offset 5) is validation.
"""

from __future__ import annotations

import json
import lzma
from functools import lru_cache
from importlib import resources

from saekit.errors import ConfigError

SPLITS = ("train", "validation", "all")


@lru_cache(maxsize=1)
def _documents() -> tuple[dict, ...]:
    path = resources.files("saekit.data").joinpath("corpus/shakespeare.jsonl.xz")
    with resources.as_file(path) as p, lzma.open(p, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    return tuple(sorted(docs, key=lambda d: d["id"]))


def corpus_documents(split: str = "train") -> list[dict]:
    """Documents of the built-in corpus as dicts with id, title, source and text."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not known; expected one of {', '.join(SPLITS)}.")
    docs = _documents()
    if split == "all":
        return list(docs)
    is_val = [i % 10 == 5 for i in range(len(docs))]
    return [d for d, v in zip(docs, is_val) if v == (split == "validation")]


def load_corpus(split: str = "train") -> list[str]:
    """Texts of the built-in corpus for one split ('train', 'validation' or 'all')."""
    return [d["text"] for d in corpus_documents(split)]
