"""ModelConfig fields added for the random-weights control (docs/model_variants.md):

- ``positional_embedding``: rotary models train, save and load back as rotary;
- ``out_init_scale``: the random-weights model's W_O and W_out are the same seed's initialisation
  times the scale (everything else identical), and the folder saves and reloads them;
- folders saved before either field existed load and are reused at the field's default; a wrong
  value is one clear sentence.
"""

import json

import pytest
import torch

from saekit.config import ModelConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.errors import ConfigError
from saekit.models import load_model, train_model

TINY = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=16, steps=3, batch_size=4, eval_tokens=256, device="cpu")
SCALED = ("attn.W_O", "mlp.W_out")


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


def test_random_model_has_scaled_output_projections_and_round_trips(tmp_path, data):
    tok, tokens = data
    random = TINY.replace(variant="random", n_layers=2)
    plain = train_model(random, tmp_path / "plain", tokenizer=tok, data=tokens, progress=False).model.state_dict()
    small = train_model(random.replace(out_init_scale=0.1), tmp_path / "small", tokenizer=tok, data=tokens, progress=False)
    state = small.model.state_dict()
    for name, value in plain.items():
        expected = value * 0.1 if name.endswith(SCALED) else value
        assert torch.allclose(state[name], expected), name
    assert sum(name.endswith(SCALED) for name in plain) == 4  # W_O and W_out of both blocks
    back = load_model(tmp_path / "small", device="cpu").model.state_dict()
    assert all(torch.equal(back[name], state[name]) for name in state)


@pytest.mark.parametrize("field, other", [("positional_embedding", "rotary"), ("out_init_scale", 0.1)])
def test_folder_saved_before_the_field_existed_is_reused_at_its_default(tmp_path, data, field, other):
    tok, tokens = data
    folder = tmp_path / "old"
    train_model(TINY, folder, tokenizer=tok, data=tokens, progress=False)
    info = json.loads((folder / "saekit_model.json").read_text())
    del info["config"][field]  # as written before the field existed
    (folder / "saekit_model.json").write_text(json.dumps(info))
    assert load_model(folder, device="cpu").model.cfg.positional_embedding_type == "standard"
    assert train_model(TINY, folder, tokenizer=tok, data=tokens, progress=False).info.get("reused") is True
    with pytest.raises(ConfigError, match="already holds a different model"):
        train_model(TINY.replace(**{field: other}), folder, tokenizer=tok, data=tokens, progress=False)


def test_unknown_positional_embedding_is_one_sentence():
    with pytest.raises(ConfigError, match=r"positional_embedding must be one of standard, rotary, got 'alibi'\."):
        ModelConfig(positional_embedding="alibi")


@pytest.mark.parametrize("bad", [0, 1.5, "small", True])
def test_bad_out_init_scale_is_one_sentence(bad):
    with pytest.raises(ConfigError, match=r"out_init_scale must be a number in \(0, 1\], got"):
        ModelConfig(out_init_scale=bad)
