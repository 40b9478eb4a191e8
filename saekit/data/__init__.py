"""Text → tokens: the built-in corpus, Hugging Face datasets, tokenizers and packing."""

from saekit.data.corpus import corpus_documents, load_corpus
from saekit.data.packing import pack_tokens, pack_tokens_with_docs
from saekit.data.sources import iter_texts, load_text_dataset, load_texts
from saekit.data.tokenizer import default_tokenizer, load_tokenizer, train_tokenizer

__all__ = [
    "corpus_documents",
    "default_tokenizer",
    "iter_texts",
    "load_corpus",
    "load_text_dataset",
    "load_texts",
    "load_tokenizer",
    "pack_tokens",
    "pack_tokens_with_docs",
    "train_tokenizer",
]
