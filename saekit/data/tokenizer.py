"""Tokenizers: a byte-level BPE trained on the built-in corpus, or any Hugging Face tokenizer."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from saekit.errors import DataError

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def cache_dir() -> Path:
    """Where saekit caches derived artefacts (tokenizers); $SAEKIT_CACHE or ~/.cache/saekit."""
    return Path(os.environ.get("SAEKIT_CACHE", Path.home() / ".cache" / "saekit"))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """Train a byte-level BPE (GPT-2 style) with BOS/EOS/PAD special tokens; deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise DataError("cannot train a tokenizer on an empty corpus; give at least one non-empty text.")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def default_tokenizer(vocab_size: int = 4096):
    """The BPE of the built-in corpus, trained once and cached on disk."""
    from saekit.data.corpus import load_corpus

    key = hashlib.sha256(f"shakespeare-bpe-v1-{vocab_size}".encode()).hexdigest()[:12]
    folder = cache_dir() / "tokenizers" / key
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder)
    tok = train_tokenizer(load_corpus("train"), vocab_size)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tok.save_pretrained(tmp)
    try:  # another process (a parallel test worker) may have cached it meanwhile: keep the first
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_tokenizer(folder)


def load_tokenizer(name_or_path: str | os.PathLike):
    """Any Hugging Face tokenizer by hub name or local folder (a saved saekit BPE included)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    except Exception as e:
        raise DataError(
            f"could not load tokenizer {str(name_or_path)!r}: {type(e).__name__}: {e}".rstrip(".") + "."
        ) from None
    return tok
