"""ModelConfig.positional_embedding: rotary models train, save and load back as rotary; folders saved
before the field existed load and are reused as "standard" models; a wrong value is one clear sentence."""

import json

import pytest
import torch

from saekit.config import ModelConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.errors import ConfigError
from saekit.models import load_model, train_model

TINY = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=16, steps=3, batch_size=4, eval_tokens=256, device="cpu")


@pytest.fixture(scope="module")
def data():
    tok = default_tokenizer()
    return tok, (pack_tokens(load_corpus("train")[:1], tok, 16, max_rows=32), pack_tokens(load_corpus("validation")[:1], tok, 16, max_rows=8))


def test_rotary_model_has_no_positional_vector_and_round_trips(tmp_path, data):
    tok, tokens = data
    h = train_model(TINY.replace(positional_embedding="rotary"), tmp_path / "rot", tokenizer=tok, data=tokens, progress=False)
    assert h.model.cfg.positional_embedding_type == "rotary" and not hasattr(h.model, "W_pos")
    # the same token at two positions enters the residual stream as the same vector
    _, cache = h.model.run_with_cache(tokens[1][:1], names_filter="blocks.0.hook_resid_pre")
    x = tokens[1][0]
    i, j = next((i, j) for i in range(16) for j in range(i + 1, 16) if x[i] == x[j])
    resid = cache["blocks.0.hook_resid_pre"][0]
    assert torch.equal(resid[i], resid[j])
    back = load_model(tmp_path / "rot", device="cpu")
    assert back.model.cfg.positional_embedding_type == "rotary"
    assert torch.equal(back.model(x[None]), h.model(x[None]))


def test_folder_saved_before_the_field_is_a_standard_model_and_reused(tmp_path, data):
    tok, tokens = data
    folder = tmp_path / "old"
    train_model(TINY, folder, tokenizer=tok, data=tokens, progress=False)
    info = json.loads((folder / "saekit_model.json").read_text())
    del info["config"]["positional_embedding"]  # as written before the field existed
    (folder / "saekit_model.json").write_text(json.dumps(info))
    assert load_model(folder, device="cpu").model.cfg.positional_embedding_type == "standard"
    assert train_model(TINY, folder, tokenizer=tok, data=tokens, progress=False).info.get("reused") is True
    with pytest.raises(ConfigError, match="already holds a different model"):
        train_model(TINY.replace(positional_embedding="rotary"), folder, tokenizer=tok, data=tokens, progress=False)


def test_unknown_positional_embedding_is_one_sentence():
    with pytest.raises(ConfigError, match=r"positional_embedding must be one of standard, rotary, got 'alibi'\."):
        ModelConfig(positional_embedding="alibi")
