"""Where a command's text and model come from, and what its errors show (issue 13, the command line):
`saekit compare --dataset/--split/--text-column`, models by Hub id through the Hugging Face
module-path route, and a subcommand's own usage on its errors."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import save_tiny_model_folder

from saekit.cli import main

WORDS = ["zebra", "quartz", "violin", "harbour", "mosaic"]  # a tiny vocabulary, far from the built-in corpus


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def word_docs(tmp_path_factory):
    """A JSONL dataset (text under "content") of documents made of WORDS only, and its documents."""
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(400)]
    path = tmp_path_factory.mktemp("data") / "words.jsonl"
    path.write_text("".join(json.dumps({"content": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path, docs


def _ids_of(docs, tok) -> set[int]:
    ids = {tok.bos_token_id, tok.eos_token_id}
    for d in docs:
        ids.update(tok(d, add_special_tokens=False)["input_ids"])
    return ids


# ------------------------------------------------------------------------ compare --dataset
def test_shared_tokens_come_from_the_dataset_first_rows_train_next_rows_held_out(model_folder, word_docs):
    from saekit.data import load_corpus, pack_tokens
    from saekit.models import load_model
    from saekit.pipeline.variants import shared_tokens

    path, docs = word_docs
    handle = load_model(model_folder)
    tokens = shared_tokens(handle, 620, 8, 6, dataset=str(path), text_column="content")
    packed = pack_tokens(docs, handle.tokenizer, 32, max_rows=26)  # 620 tokens = 20 rows of 31, then 6 held out
    assert torch.equal(tokens.train, packed[:20]) and torch.equal(tokens.eval, packed[20:26])
    assert tokens.source == {"dataset": str(path), "split": "train", "text_column": "content",
                             "held_out": "the 6 contexts after the training contexts"}  # fmt: skip
    builtin = shared_tokens(handle, 620, 8, 6)  # no dataset: the corpus's train and validation splits
    assert torch.equal(builtin.train, pack_tokens(load_corpus("train"), handle.tokenizer, 32, max_rows=20))
    assert torch.equal(builtin.eval, pack_tokens(load_corpus("validation"), handle.tokenizer, 32, max_rows=6))
    small = shared_tokens(handle, 10**6, 8, 6, dataset=str(path), text_column="content")  # the dataset runs out
    assert len(small.eval) == 6 and len(small.train) + 6 == len(pack_tokens(docs, handle.tokenizer, 32))


def test_compare_cli_trains_and_holds_out_text_of_the_dataset(model_folder, word_docs, tmp_path, capsys):
    path, docs = word_docs
    cfg = tmp_path / "dict.json"
    cfg.write_text(json.dumps({"kind": "topk", "n_latents": 64, "k": 4, "hook_name": "blocks.1.hook_resid_post"}))
    args = ["compare", model_folder, "--config", cfg, "--out", tmp_path / "c", "--train-tokens", "1024",
            "--batch-size", "128", "--eval-seqs", "8", "--autointerp-latents", "8", "--no-synthetic",
            "--cache-dir", tmp_path / "cache", "--dataset", path]  # fmt: skip
    assert main([str(a) for a in args]) == 2  # the column is "content", not "text": the dataset is what is read
    assert "no column 'text'" in capsys.readouterr().err
    assert main([str(a) for a in [*args, "--text-column", "content"]]) == 0
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["settings"]["data"]["dataset"] == str(path)
    assert results["settings"]["data"]["text_column"] == "content"
    from saekit.models import load_model

    tok = load_model(model_folder).tokenizer
    allowed = _ids_of(docs, tok)
    from saekit.data import load_corpus

    assert not _ids_of(load_corpus("validation")[:3], tok) <= allowed  # the check below can tell the texts apart
    manifest = json.loads((tmp_path / "cache" / "baseline" / "manifest.json").read_text())
    trained = set()
    for shard in manifest["shards"]:
        trained.update(load_file(tmp_path / "cache" / "baseline" / shard["file"])["token_ids"].tolist())
    assert trained and trained <= allowed  # every training activation is of a dataset token
    pieces = {tok.decode([i]) for i in allowed}
    shown = [p for ex in results["examples"] for c in ex["contexts"] for p in c["text"]]
    assert shown and set(shown) <= pieces  # held-out contexts shown in the report are dataset text
