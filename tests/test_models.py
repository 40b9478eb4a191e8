"""Model variants: each regulariser does what it claims, on real tiny transformer-lens models."""

import math

import pytest
import torch

from saekit.config import ModelConfig
from saekit.data import load_corpus, pack_tokens
from saekit.models import (
    corpus_tokens,
    load_model,
    mean_mlp_activation_l1,
    neighbour_similarity,
    sheet_shape,
    train_model,
    train_variants,
    weight_l1,
)

# Regulariser checks compare short runs of identical data and seed; the learning check trains
# one baseline longer.
TINY = ModelConfig(
    n_layers=1,
    d_model=64,
    n_heads=4,
    d_mlp=256,
    n_ctx=32,
    batch_size=16,
    steps=60,
    warmup_steps=10,
    lr=5e-3,
    eval_tokens=4096,
    device="cpu",
    prune_every=5,
)
LEARNING = TINY.replace(batch_size=32, steps=250, lr=1e-2, eval_tokens=8192)  # margin 0.90 nats (21 s; batch 64: 1.08, 55 s)
COEFS = {"act_l1": 0.3, "l1_weights": 3e-4, "pruned": 0.7, "topographic": 5.0}


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    names = ["baseline", "act_l1", "l1_weights", "pruned", "topographic", "solu", "random"]
    return train_variants(names, out, base=TINY, coefs=COEFS)


@pytest.fixture(scope="module")
def val_tokens(variants):
    return pack_tokens(load_corpus("validation"), variants["baseline"].tokenizer, TINY.n_ctx, max_rows=64)


def test_baseline_learns_far_below_unigram_entropy(tmp_path):
    tokenizer, train, val = corpus_tokens(LEARNING)
    counts = torch.bincount(train[:, 1:].flatten(), minlength=LEARNING.vocab_size).float()
    p = counts[counts > 0] / counts.sum()
    unigram_entropy = float(-(p * p.log()).sum())  # nats: the loss of the best context-free model
    handle = train_model(LEARNING, tmp_path / "baseline", tokenizer=tokenizer, data=(train, val))
    # 0.8 nats below = a perplexity 2.2x lower than the best context-free model
    assert handle.info["val_loss"] < unigram_entropy - 0.8, (handle.info["val_loss"], unigram_entropy)


def test_random_control_is_untrained(variants):
    assert variants["random"].info["val_loss"] > math.log(TINY.vocab_size) - 1.0  # untrained ≈ uniform


def test_act_l1_lowers_mlp_activation(variants, val_tokens):
    base = mean_mlp_activation_l1(variants["baseline"].model, val_tokens)
    reg = mean_mlp_activation_l1(variants["act_l1"].model, val_tokens)
    assert reg < 0.7 * base, (reg, base)


def test_l1_weights_lowers_weight_l1(variants):
    with torch.no_grad():
        assert float(weight_l1(variants["l1_weights"].model)) < 0.8 * float(weight_l1(variants["baseline"].model))


def test_pruned_has_target_zero_fraction_and_saved_mask(variants):
    handle = variants["pruned"]
    mlp = [p for n, p in handle.model.named_parameters() if n.endswith(("mlp.W_in", "mlp.W_out"))]
    zero_fraction = sum(int((p == 0).sum()) for p in mlp) / sum(p.numel() for p in mlp)
    assert zero_fraction == pytest.approx(0.7, abs=0.005)
    reloaded = load_model(handle.path)  # the zeros survive the round trip, the mask is on disk
    assert torch.equal(reloaded.model.blocks[0].mlp.W_in, handle.model.blocks[0].mlp.W_in)
    assert (handle.path / "masks.safetensors").is_file()


def test_topographic_is_smoother_on_the_sheet(variants):
    sheet = sheet_shape(TINY.d_mlp)
    topo = neighbour_similarity(variants["topographic"].model, sheet)
    base = neighbour_similarity(variants["baseline"].model, sheet)
    assert topo > base + 0.1, (topo, base)


def test_solu_uses_solu_ln_and_all_share_data_order(variants, tmp_path):
    assert variants["solu"].model.cfg.act_fn == "solu_ln"
    assert variants["baseline"].model.cfg.act_fn == "gelu"
    # Same init and same batches in the same order: a regulariser at coefficient 0 trains
    # exactly the baseline (any difference in data order or seed would change the weights),
    # while another model seed does not.
    short = TINY.replace(steps=15)
    zero = train_variants(["baseline", "act_l1", "l1_weights"], tmp_path, base=short, coefs={"act_l1": 0.0, "l1_weights": 0.0})
    base = zero["baseline"].model.state_dict()
    for name in ("act_l1", "l1_weights"):
        other = zero[name].model.state_dict()
        assert all(torch.equal(base[k], other[k]) for k in base), name
    reseeded = train_variants(["baseline"], tmp_path / "seed1", base=short.replace(seed=1))["baseline"].model.state_dict()
    assert not all(torch.equal(base[k], reseeded[k]) for k in base)


def test_model_folder_round_trip(variants, val_tokens):
    handle = variants["baseline"]
    for name in ("model.safetensors", "tl_config.json", "saekit_model.json", "tokenizer/tokenizer.json"):
        assert (handle.path / name).is_file()
    loaded = load_model(handle.path)
    assert loaded.variant == "baseline" and loaded.info["val_loss"] == handle.info["val_loss"]
    with torch.no_grad():
        assert torch.equal(loaded.model(val_tokens[:2]), handle.model(val_tokens[:2]))
    assert loaded.tokenizer.encode("To be, or not to be") == handle.tokenizer.encode("To be, or not to be")
