"""Neuron alignment: latents planted on a real model's neuron output directions are found, others are not."""

import numpy as np
import pytest
import torch

from saekit.errors import ConfigError
from saekit.evaluation.neurons import neuron_alignment


@pytest.fixture(scope="module")
def W_out():
    from tests.tiny_models import tiny_hooked_transformer

    return tiny_hooked_transformer().blocks[1].mlp.W_out.detach()  # [d_mlp 256, d_model 64]


def test_planted_neuron_directions_are_counted(W_out):
    g = torch.Generator().manual_seed(0)
    n_planted = 12
    neurons = torch.randperm(W_out.shape[0], generator=g)[:n_planted]
    planted = 3.0 * W_out[neurons] + 0.1 * W_out[neurons].norm(dim=1, keepdim=True) * torch.randn(n_planted, 64, generator=g) / 8
    negated = -W_out[neurons[:4]]  # writes against a neuron: not that neuron
    unit = torch.nn.functional.normalize(W_out[neurons], dim=1)
    mixed = unit[:4] + unit[4:8] + unit[8:12]  # a third of three neurons: cos about 0.58 with each
    rand = torch.randn(30, 64, generator=g)
    W_dec = torch.cat([planted, negated, mixed, rand])
    r = neuron_alignment(W_dec, W_out)
    assert r["n_aligned"] == n_planted and r["n_latents"] == W_dec.shape[0]
    assert r["fraction"] == pytest.approx(n_planted / W_dec.shape[0])
    np.testing.assert_array_equal(r["best_neuron"][:n_planted], neurons.numpy())
    assert (r["best_cos"][:n_planted] > 0.9).all() and (r["best_cos"][n_planted:] <= 0.7).all()
    # only alive latents count
    alive = torch.zeros(W_dec.shape[0], dtype=torch.bool)
    alive[:6] = True
    alive[-6:] = True
    assert neuron_alignment(W_dec, W_out, alive=alive)["fraction"] == pytest.approx(0.5)


def test_pruned_neurons_match_nothing(W_out):
    pruned = W_out.clone()
    pruned[:10] = 0.0
    r = neuron_alignment(W_out[:10].clone(), pruned)
    assert r["n_aligned"] == 0 and np.isfinite(r["best_cos"]).all()


def test_shape_mismatch_is_one_sentence(W_out):
    with pytest.raises(ConfigError, match="W_dec rows have 32 dimensions but W_out rows 64"):
        neuron_alignment(torch.randn(5, 32), W_out)
    with pytest.raises(ConfigError, match="expects W_dec"):
        neuron_alignment(torch.randn(5, 2, 64), W_out)
