"""ModelConfig.out_init_scale: the random-weights model's W_O and W_out are the same seed's initialisation times
the scale (everything else identical), the folder saves and reloads them, folders saved before the field existed
are reused as scale-1 models, and a wrong value is one clear sentence."""

import json

import pytest
import torch

from saekit.config import ModelConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.errors import ConfigError
from saekit.models import load_model, train_model

TINY = ModelConfig(variant="random", n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=16, steps=3, batch_size=4,
                   eval_tokens=256, device="cpu")  # fmt: skip
SCALED = ("attn.W_O", "mlp.W_out")


@pytest.fixture(scope="module")
def data():
    tok = default_tokenizer()
    return tok, (pack_tokens(load_corpus("train")[:1], tok, 16, max_rows=32), pack_tokens(load_corpus("validation")[:1], tok, 16, max_rows=8))


def test_random_model_has_scaled_output_projections_and_round_trips(tmp_path, data):
    tok, tokens = data
    plain = train_model(TINY, tmp_path / "plain", tokenizer=tok, data=tokens, progress=False).model.state_dict()
    small = train_model(TINY.replace(out_init_scale=0.1), tmp_path / "small", tokenizer=tok, data=tokens, progress=False)
    state = small.model.state_dict()
    for name, value in plain.items():
        expected = value * 0.1 if name.endswith(SCALED) else value
        assert torch.allclose(state[name], expected), name
    assert sum(name.endswith(SCALED) for name in plain) == 4  # W_O and W_out of both blocks
    back = load_model(tmp_path / "small", device="cpu").model.state_dict()
    assert all(torch.equal(back[name], state[name]) for name in state)


def test_folder_saved_before_the_field_is_a_scale_one_model(tmp_path, data):
    tok, tokens = data
    folder = tmp_path / "old"
    train_model(TINY, folder, tokenizer=tok, data=tokens, progress=False)
    info = json.loads((folder / "saekit_model.json").read_text())
    del info["config"]["out_init_scale"]  # as written before the field existed
    (folder / "saekit_model.json").write_text(json.dumps(info))
    assert train_model(TINY, folder, tokenizer=tok, data=tokens, progress=False).info.get("reused") is True
    with pytest.raises(ConfigError, match="already holds a different model"):
        train_model(TINY.replace(out_init_scale=0.1), folder, tokenizer=tok, data=tokens, progress=False)


@pytest.mark.parametrize("bad", [0, 1.5, "small", True])
def test_bad_out_init_scale_is_one_sentence(bad):
    with pytest.raises(ConfigError, match=r"out_init_scale must be a number in \(0, 1\], got"):
        ModelConfig(out_init_scale=bad)
