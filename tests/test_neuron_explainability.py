"""Neuron explainability: the model's own MLP neurons get the offline n-gram explanations latents get,
scored on held-out text (planted neurons on real corpus tokens)."""

import numpy as np
import pytest
import torch

from saekit.pipeline.axes import neuron_f1


@pytest.fixture(scope="module")
def tokens():
    from saekit.data import default_tokenizer, load_corpus, pack_tokens

    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[:1], tok, 32, max_rows=200)
    val = pack_tokens(load_corpus("validation")[:1], tok, 32, max_rows=200)
    return train, val


def _planted(toks: torch.Tensor, frequent: torch.Tensor, seed: int) -> torch.Tensor:
    """[n_seq, n_ctx, 3] GELU-like neurons: a token neuron (positive on a set of tokens, slightly negative
    elsewhere), a noise neuron (positive at random 30 % of positions), a neuron that is never positive."""
    g = torch.Generator().manual_seed(seed)
    on_set = torch.isin(toks, frequent).float()
    token_neuron = on_set * (1 + 0.1 * torch.rand(toks.shape, generator=g)) - 0.1 * (1 - on_set)
    noise = (torch.rand(toks.shape, generator=g) < 0.3).float() - 0.05
    silent = -0.1 * torch.ones(toks.shape)
    return torch.stack([token_neuron, noise, silent], dim=-1)


def test_token_neuron_is_explained_noise_is_not_and_silent_is_left_out(tokens):
    train, val = tokens
    ids, counts = torch.unique(train[:, 1:], return_counts=True)
    frequent = ids[counts.argsort(descending=True)[:5]]  # five common tokens: seen in both splits
    f1 = neuron_f1(_planted(train, frequent, 0), train, _planted(val, frequent, 1), val, n_neurons=8, seed=0)
    assert f1.shape == (2,)  # the silent neuron never fires: not explained, not scored
    assert f1[0] > 0.9, f1  # the token neuron: its unigram explanation predicts it on held-out text
    assert f1[1] < 0.3, f1  # noise: no n-gram predicts it
    # only the positive part counts as firing: a neuron negative everywhere off its tokens is still sparse
    assert neuron_f1(_planted(train, frequent, 0)[..., :1], train, _planted(val, frequent, 1)[..., :1], val, 8, 0)[0] > 0.9


def test_sample_of_neurons_is_seeded_and_bounded(tokens):
    train, val = tokens
    ids, counts = torch.unique(train[:, 1:], return_counts=True)
    frequent = ids[counts.argsort(descending=True)[:5]]
    acts_tr = _planted(train, frequent, 0).repeat(1, 1, 4)  # 12 neurons, 8 of them alive
    acts_ev = _planted(val, frequent, 1).repeat(1, 1, 4)
    a = neuron_f1(acts_tr, train, acts_ev, val, n_neurons=3, seed=5)
    assert a.shape == (3,)
    np.testing.assert_array_equal(a, neuron_f1(acts_tr, train, acts_ev, val, n_neurons=3, seed=5))
