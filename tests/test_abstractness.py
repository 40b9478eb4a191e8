"""Abstractness (1 - R² from token ids) against planted latents on real text tokens, and its exact arithmetic."""

import numpy as np
import pytest
import torch

from saekit.errors import ConfigError
from saekit.evaluation.abstractness import _fit_mask, abstractness, previous_token_ids


@pytest.fixture(scope="module")
def corpus_tokens():
    """Held-out text of the built-in corpus, tokenised with a 512-token BPE: [400, 64] ids."""
    from saekit.data import load_corpus, train_tokenizer
    from saekit.data.packing import pack_tokens

    tok = train_tokenizer(load_corpus("train")[:2], vocab_size=512)
    return pack_tokens(load_corpus("validation"), tok, 64, max_rows=400)


@pytest.fixture(scope="module")
def planted(corpus_tokens):
    """Latents of known kinds on those tokens, read through a real model's token embedding."""
    from tests.tiny_models import tiny_hooked_transformer

    W_E = tiny_hooked_transformer(d_vocab=512).W_E.detach()  # [512, 64]
    u = torch.nn.functional.normalize(torch.randn(3, W_E.shape[1], generator=torch.Generator().manual_seed(0)), dim=1)
    toks = corpus_tokens
    two_back = torch.zeros_like(toks)
    two_back[:, 2:] = toks[:, :-2]
    cur, prev = previous_token_ids(toks)
    acts = torch.stack(
        [
            torch.relu(W_E[cur] @ u[0]),  # copies the current token's embedding: token-level
            torch.relu(W_E[two_back.reshape(-1)] @ u[1]) * (torch.arange(toks.numel()) % 64 >= 2),  # two tokens back
            torch.relu(W_E[prev.clamp_min(0)] @ u[2]) * (prev >= 0),  # the previous token
            torch.zeros(cur.numel()),  # dead
        ],
        dim=1,
    )
    return acts, cur, prev


def test_token_level_latent_near_zero_context_latent_high(planted):
    acts, cur, prev = planted
    r = abstractness(acts, cur, prev, split_seed=0)
    assert r["current"][0] < 0.1 and r["last_two"][0] < 0.1
    assert r["current"][1] > 0.5 and r["last_two"][1] > 0.5
    # the previous-token latent: abstract to the current token alone, concrete given the last two
    assert r["current"][2] > 0.5
    assert r["last_two"][2] < 0.5 * r["current"][2]
    assert np.isnan(r["current"][3]) and not r["alive"][3] and r["n_alive"] == 3
    assert r["median_current"] == pytest.approx(float(np.median(r["current"][:3])))
    assert r["n_fit"] + r["n_score"] == cur.numel() and abs(r["n_fit"] - r["n_score"]) <= 1


def test_chunks_and_latent_blocks_give_the_dense_result(planted):
    acts, cur, prev = planted
    dense = abstractness(acts, cur, prev, split_seed=1)
    parts = list(torch.split(acts, 5000))
    for source in (parts, lambda: iter(parts)):
        chunked = abstractness(source, cur, prev, split_seed=1, max_table_mb=0.05)  # forces one latent per block
        np.testing.assert_allclose(chunked["current"], dense["current"], rtol=1e-9, equal_nan=True)
        np.testing.assert_allclose(chunked["last_two"], dense["last_two"], rtol=1e-9, equal_nan=True)
    without_prev = abstractness(acts, cur, split_seed=1)
    assert without_prev["last_two"] is None and without_prev["median_last_two"] is None
    np.testing.assert_allclose(without_prev["current"], dense["current"], equal_nan=True)


def _naive(acts, cur, prev, fit):
    """Row-by-row reference: fit-half means per key with the documented fallbacks, scored on the rest."""
    out = {"current": [], "last_two": []}
    for j in range(acts.shape[1]):
        a = acts[:, j]
        by_tok, by_pair = {}, {}
        for i in np.flatnonzero(fit):
            by_tok.setdefault(cur[i], []).append(a[i])
            by_pair.setdefault((prev[i], cur[i]), []).append(a[i])
        g = a[fit].mean()
        score = np.flatnonzero(~fit)
        tok_pred = np.array([np.mean(by_tok[cur[i]]) if cur[i] in by_tok else g for i in score])
        pair_pred = np.array(
            [np.mean(by_pair[(prev[i], cur[i])]) if (prev[i], cur[i]) in by_pair else p for i, p in zip(score, tok_pred)]
        )
        y = a[score]
        sst = ((y - y.mean()) ** 2).sum()
        out["current"].append(min(1.0, ((y - tok_pred) ** 2).sum() / sst))
        out["last_two"].append(min(1.0, ((y - pair_pred) ** 2).sum() / sst))
    return out


def test_matches_a_row_by_row_reference():
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 30, (40, 16), generator=g)
    cur, prev = previous_token_ids(toks)
    E = torch.randn(30, 5, generator=g)
    acts = torch.relu(E[cur] + 0.6 * E[prev.clamp_min(0)] + 0.3 * torch.randn(cur.numel(), 5, generator=g))
    r = abstractness(acts, cur, prev, split_seed=7)
    ref = _naive(acts.double().numpy(), cur.numpy(), prev.numpy(), _fit_mask(cur.numel(), 7).numpy())
    np.testing.assert_allclose(r["current"], ref["current"], rtol=1e-9)
    np.testing.assert_allclose(r["last_two"], ref["last_two"], rtol=1e-9)
    assert 0.1 < r["median_current"] < 0.9 and r["median_last_two"] < r["median_current"]


def test_bad_input_is_one_sentence():
    acts = torch.rand(10, 3)
    with pytest.raises(ConfigError, match="10 rows but token_ids has 9"):
        abstractness(acts, torch.arange(9))
    with pytest.raises(ConfigError, match="integer token ids"):
        abstractness(acts, torch.rand(10))
    with pytest.raises(ConfigError, match="prev_token_ids has 4 entries"):
        abstractness(acts, torch.arange(10), torch.arange(4))
