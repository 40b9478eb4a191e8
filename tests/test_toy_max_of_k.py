"""Max-of-K ground truth: the Gross et al. model, its labels, and dictionaries scored against them."""

import pytest
import torch

from saekit.errors import DataError
from saekit.evaluation.ground_truth import dedicated_fraction, explain_latents, split_tree
from saekit.models.max_of_k import (
    MaxOfKConfig,
    _logit_tables,
    check_tokens,
    exhaustive_accuracy,
    input_labels,
    last_logits,
    sample_inputs,
    site_activations,
    train_max_of_k,
)
from saekit.pipeline.toy_max_of_k import train_site_dictionaries


@pytest.fixture(scope="session")
def mok64():
    """The paper's model (vocabulary 64, K = 4), trained once for the session."""
    return train_max_of_k(MaxOfKConfig(steps=300))


@pytest.fixture(scope="session")
def mok16():
    """The small configuration: vocabulary 16, with its residual activations and labels."""
    model = train_max_of_k(MaxOfKConfig(vocab=16, steps=400))
    gen = torch.Generator().manual_seed(1)
    train_x = site_activations(model, sample_inputs(1 << 14, 16, 4, gen))["resid"]
    tokens = sample_inputs(1 << 13, 16, 4, gen)
    return model, train_x, site_activations(model, tokens)["resid"], input_labels(tokens)


def test_table_forward_equals_model(mok16):
    model = mok16[0]
    tokens = sample_inputs(500, 16, 4, torch.Generator().manual_seed(3), balanced=False)
    with torch.no_grad():
        ref = last_logits(model, tokens)
        fast = _logit_tables(model).logits_every_query(tokens[:, :3])[torch.arange(500), tokens[:, 3]]
    assert torch.allclose(ref, fast, atol=1e-4)


def test_outer_sum_accuracy_equals_the_forward_pass_tables(mok16):
    from saekit.models.max_of_k import _exhaustive_accuracy_any_k

    for model in (mok16[0], train_max_of_k(MaxOfKConfig(vocab=16, variant="random"))):
        assert exhaustive_accuracy(model) == _exhaustive_accuracy_any_k(model, 1 << 10)


def test_exhaustive_accuracy_of_trained_model(mok64):
    assert exhaustive_accuracy(mok64) >= 0.99
    # the untrained model is the control: near chance
    assert exhaustive_accuracy(train_max_of_k(MaxOfKConfig(vocab=16, variant="random"))) < 0.5


def test_labels_by_construction():
    tokens = torch.tensor([[3, 7, 7, 1], [5, 5, 5, 5], [0, 2, 9, 4]])
    lab = input_labels(tokens)
    assert lab["max"].tolist() == [7, 5, 9]
    assert lab["query"].tolist() == [1, 5, 4]
    assert lab["nonmax"].tolist() == [3, -1, 4]
    assert lab["copies"].tolist() == [2, 4, 1]
    assert lab["max_position"].tolist() == [1, 0, 2]


def test_width_vocab_dictionary_dedicates_latents_to_max_values(mok64):
    gen = torch.Generator().manual_seed(1)
    x = site_activations(mok64, sample_inputs(1 << 15, 64, 4, gen))["logits"]
    tokens = sample_inputs(1 << 14, 64, 4, gen)
    sae = train_site_dictionaries(x, [64], 1, 1 << 17, 0)[0]  # greedy k-means++ seeds (random data seeds: ~0.6)
    with torch.no_grad():
        z = sae.encode(site_activations(mok64, tokens)["logits"])
    assert dedicated_fraction(explain_latents(z, input_labels(tokens)), "max", list(range(64))) >= 0.9


def test_wider_dictionary_children_separated_by_a_named_label(mok16):
    _, train_x, eval_x, labels = mok16
    small, big = train_site_dictionaries(train_x, [16, 64], 1, 1 << 16, 0)
    with torch.no_grad():
        zs, zb = small.encode(eval_x), big.encode(eval_x)
    splits = split_tree(zs, zb, small.W_dec.detach(), big.W_dec.detach(), labels)
    assert len(splits) >= 4
    # the children of a split parent share its max value; another label tells them apart
    named = [s for s in splits if s["label"] in ("query", "nonmax", "copies", "max_position") and s["mi_fraction"] > 0.3]
    assert len(named) >= len(splits) // 2


def test_planted_indicator_latent_has_purity_one():
    tokens = sample_inputs(4000, 16, 4, torch.Generator().manual_seed(0))
    labels = input_labels(tokens)
    acts = torch.stack([(labels["max"] == 9).float() * 2.0, (labels["query"] == 3).float(), torch.rand(4000)], 1)
    expl = explain_latents(acts, labels)
    assert (expl[0]["label"], expl[0]["value"], expl[0]["purity"], expl[0]["recall"]) == ("max", 9, 1.0, 1.0)
    assert (expl[1]["label"], expl[1]["value"], expl[1]["purity"]) == ("query", 3, 1.0)
    assert expl[2]["purity"] < 0.5  # fires on everything: no label is pure for it
    assert dedicated_fraction(expl, "max", [9]) == 1.0


def test_inputs_that_do_not_fit_the_model_are_refused(mok16):
    model = mok16[0]
    with pytest.raises(DataError, match=r"shape \[n, 4\]"):
        check_tokens(model, torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(DataError, match="0..15"):
        check_tokens(model, torch.full((3, 4), 40))
