"""Free decoder norms (``DictionaryConfig(decoder_norm="free")``, SAELens's top-k parametrisation
``rescale_acts_by_decoder_norm``): the sparse-backward path trains exactly as the dense one, the rows
keep their own norms while training, and the trained dictionary is folded into the same function
with unit rows (in memory, in the saved folder, with act_scale folded too)."""

import json

import pytest
import torch
from synthetic import feature_recovery, sparse_feature_data

from saekit import DictionaryConfig, TrainConfig
from saekit.dictionaries import create
from saekit.errors import ConfigError
from saekit.io import load
from saekit.parallel import ShardedTopK
from saekit.training import Trainer

FREE = DictionaryConfig(kind="topk", d_in=16, n_latents=64, k=4, decoder_norm="free")


def spread_dictionary(seed: int = 0):
    """A free-norm dictionary whose rows have norms from 0.1 to 3 (folding must undo them)."""
    sae = create(FREE, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(64, 1, generator=gen) * 29 + 1)
        sae.b_enc.copy_(torch.randn(64, generator=gen) * 0.1)
        sae.b_dec.copy_(torch.randn(16, generator=gen) * 0.1)
    return sae


def test_free_rows_start_at_the_init_norm_with_the_encoder_their_transpose():
    sae = create(FREE, seed=0)
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.full((64,), 0.1))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert torch.allclose(create(FREE.as_saved(), seed=0).W_dec.norm(dim=-1), torch.ones(64))


@pytest.mark.parametrize("n_dead", [0, 20, 48])  # no AuxK, AuxK's dense few-dead path, its sparse path
def test_the_sparse_backward_trains_free_rows_as_the_dense_path_does(n_dead):
    sae = spread_dictionary()
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(1))
    dead = torch.arange(64) < n_dead

    def loss_and_grads(fused: bool):
        copy = create(FREE, init=False)
        copy.load_state_dict(sae.state_dict())
        copy.fused_encode = fused
        out = copy.training_loss(x, dead_mask=dead)
        out.loss.backward()
        return out.loss.detach(), [p.grad for p in (copy.W_enc, copy.b_enc, copy.W_dec, copy.b_dec)]

    (loss_s, grads_s), (loss_d, grads_d) = loss_and_grads(True), loss_and_grads(False)
    assert torch.allclose(loss_s, loss_d, rtol=1e-5)
    for g_s, g_d in zip(grads_s, grads_d):
        assert torch.allclose(g_s, g_d, rtol=1e-4, atol=1e-6)
    # the norms matter: the same weights read as unit rows give another loss
    unit = create(FREE.as_saved(), init=False)
    unit.load_state_dict(sae.state_dict())
    assert not torch.allclose(unit.training_loss(x, dead_mask=dead).loss.detach(), loss_d, rtol=1e-3)


def test_folding_keeps_the_function_and_leaves_unit_rows():
    sae = spread_dictionary()
    x = torch.randn(256, 16)
    with torch.no_grad():
        before, codes = sae(x), sae.encode(x)
        sae.fold_decoder_norms()
        assert sae.cfg.decoder_norm == "unit"
        assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(64), atol=1e-6)
        assert torch.allclose(sae(x), before, atol=1e-5) and torch.allclose(sae.encode(x), codes, atol=1e-5)


def test_a_free_dictionary_saved_mid_training_reads_back_as_the_same_unit_dictionary(tmp_path):
    sae = spread_dictionary()
    sae.act_scale.fill_(2.5)  # folded on export as well: the rows end at norm 1/2.5
    x = torch.randn(256, 16)
    with torch.no_grad():
        before = sae(x)
    sae.save(tmp_path / "d")
    assert sae.cfg.decoder_norm == "free"  # saving copies: the dictionary in memory keeps training as it was
    assert json.loads((tmp_path / "d" / "saekit.json").read_text())["dictionary"]["decoder_norm"] == "unit"
    back = load(tmp_path / "d")
    assert back.cfg.decoder_norm == "unit"
    with torch.no_grad():
        assert torch.allclose(back(x), before, atol=1e-5)


def test_training_keeps_free_norms_then_folds_them_and_finds_the_features():
    X, feats = sparse_feature_data(n=30_000, d=32, n_features=64, mean_active=3.0, seed=0)
    cfg = DictionaryConfig(kind="topk", d_in=32, n_latents=128, k=3, decoder_norm="free")
    trainer = Trainer(cfg, X, TrainConfig(batch_size=256, total_tokens=120_000, seed=0, device="cpu"), progress=False)
    run = trainer.runs[0]
    assert run.sae.cfg.W_dec_lr_scale == 1.0  # a free row's turning rate is set by its norm, not a multiple
    for _ in range(100):
        trainer.step(*trainer.next_batch())
    norms = run.sae.W_dec.detach().norm(dim=-1)
    assert (norms - 0.1).abs().max() > 0.05 and (norms - 1).abs().min() > 1e-3  # not held at 0.1 or renormalised to 1
    sae = trainer.fit()[0]
    assert sae.cfg.decoder_norm == "unit"
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(128), atol=1e-5)  # act_scale is folded on export
    mmcs, matched = feature_recovery(feats, sae.W_dec.detach())
    assert mmcs >= 0.95 and matched >= 0.9, (mmcs, matched)


def test_free_norms_are_refused_where_they_are_not_supported():
    with pytest.raises(ConfigError, match="a top-k autoencoder"):
        DictionaryConfig(kind="batchtopk", d_in=8, n_latents=32, k=2, decoder_norm="free")
    with pytest.raises(ConfigError, match="expected unit or free"):
        DictionaryConfig(kind="topk", d_in=8, n_latents=32, k=2, decoder_norm="sphere")
    with pytest.raises(ConfigError, match="decoder_init_norm must be > 0"):
        DictionaryConfig(kind="topk", d_in=8, n_latents=32, k=2, decoder_norm="free", decoder_init_norm=0.0)
    with pytest.raises(ConfigError, match="latent sharding needs unit decoder rows"):
        ShardedTopK(FREE)
    with pytest.raises(ConfigError, match="no transcoder"):
        DictionaryConfig(kind="topk", d_in=8, d_out=4, n_latents=32, k=2, decoder_norm="free")

