"""The n-gram explainer on real text (the built-in corpus): planted latents with a known answer."""

import numpy as np
import pytest
import torch

from saekit.config import DictionaryConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.dictionaries import create
from saekit.evaluation.autointerp import (
    NgramIndex,
    SparseActs,
    autointerp,
    collect_acts,
    logit_lens,
    token_entropy,
    top_contexts,
)


@pytest.fixture(scope="module")
def text():
    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[:6], tok, n_ctx=64)
    test = pack_tokens(load_corpus("validation")[:2], tok, n_ctx=64)
    return tok, train, test


def _bigram_positions(tokens: torch.Tensor, a: int, b: int) -> np.ndarray:
    t = tokens.numpy()
    hit = np.zeros_like(t, dtype=bool)
    hit[:, 1:] = (t[:, :-1] == a) & (t[:, 1:] == b)
    return np.flatnonzero(hit.reshape(-1))


def _planted(tokens: torch.Tensor, latent_positions: list[np.ndarray], seed: int) -> SparseActs:
    rng = np.random.default_rng(seed)
    pos = np.concatenate(latent_positions)
    lat = np.concatenate([np.full(len(p), i) for i, p in enumerate(latent_positions)])
    val = rng.uniform(0.5, 3.0, len(pos)).astype(np.float32)
    return SparseActs.from_triples(tokens.numel(), len(latent_positions), pos, lat, val)


def test_ngram_index_counts_bigrams_within_rows():
    tokens = torch.tensor([[5, 1, 2, 1, 2], [5, 2, 1, 2, 2]])
    idx = NgramIndex(tokens, max_n=2)
    base = idx.base
    assert idx.ids[1][0] == -1 and idx.ids[1][5] == -1  # no bigram ends at a row start
    assert idx.ids[1][2] == 1 * base + 2  # (1, 2) ends at flat position 2
    assert idx.count(2, np.array([1 * base + 2]))[0] == 3  # (1,2) occurs three times
    assert idx.count(1, np.array([2, 7]))[0] == 5 and idx.count(1, np.array([7]))[0] == 0


def test_planted_bigram_latent_is_explained_and_random_latent_is_not(text):
    tok, train, test = text
    a, b = tok.encode(" my lord")
    lord_train = (train == b).sum().item()
    bigram_train = _bigram_positions(train, a, b)
    # precondition that makes the test meaningful: " lord" alone is a poor explanation
    assert len(bigram_train) > 20 and len(bigram_train) / lord_train < 0.7
    rng = np.random.default_rng(0)
    random_train = rng.choice(train.numel(), size=train.numel() // 20, replace=False)
    random_test = rng.choice(test.numel(), size=test.numel() // 20, replace=False)
    acts_train = _planted(train, [bigram_train, random_train], seed=1)
    acts_test = _planted(test, [_bigram_positions(test, a, b), random_test], seed=2)
    out = autointerp(acts_train, train, acts_test, test, tokenizer=tok)
    planted, random = out["latents"]
    assert planted["patterns"] == [[a, b]]
    assert planted["f1"] >= 0.9 and planted["n_fired"] > 10
    assert "my lord" in planted["explanation"]
    assert random["f1"] < 0.2
    assert out["f1"]["n"] == 2


def test_single_token_latent_has_zero_entropy_and_bigram_latent_more(text):
    tok, train, _ = text
    (the,) = tok.encode(" the")
    pos_the = np.flatnonzero(train.reshape(-1).numpy() == the)
    a, b = tok.encode(" my lord")
    acts = _planted(train, [pos_the, _bigram_positions(train, a, b), np.arange(0, train.numel(), 7)], seed=0)
    assert token_entropy(acts, train, 0)["token_entropy"] == pytest.approx(0.0)
    assert token_entropy(acts, train, 1)["token_entropy"] == pytest.approx(0.0)  # fires on " lord" only
    assert token_entropy(acts, train, 2)["token_entropy"] > 5.0  # every 7th token: many tokens


def test_top_contexts_and_collect_acts_roundtrip():
    torch.manual_seed(0)
    tokens = torch.arange(40).reshape(4, 10)
    z = torch.zeros(40, 3)
    z[13, 1] = 5.0
    z[27, 1] = 2.0
    z[5, 0] = 1.0
    acts = SparseActs.from_dense(z)
    ctx = top_contexts(acts, tokens, 1, n=2, before=2, after=1)
    assert [c["value"] for c in ctx] == [5.0, 2.0]
    assert ctx[0]["tokens"] == [11, 12, 13, 14] and ctx[0]["focus"] == 2 and ctx[0]["acts"][2] == 5.0

    sae = create(DictionaryConfig(kind="topk", d_in=6, n_latents=24, k=3), seed=0)
    x = torch.randn(50, 6)
    got = collect_acts(sae, x, batch_size=16)
    with torch.no_grad():
        ref = SparseActs.from_dense(sae.encode(x))
    assert np.array_equal(got.indptr, ref.indptr) and np.array_equal(got.positions, ref.positions)
    assert np.allclose(got.values, ref.values, atol=1e-6)


def test_logit_lens_reads_the_promoted_token():
    W_U = 0.1 * torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    W_U[:, 17] = 0
    W_U[3, 17] = 5.0  # token 17's unembedding is the 4th basis direction
    ids, vals = logit_lens(torch.eye(8)[3], W_U, k=3)
    assert ids[0] == 17 and vals[0] == pytest.approx(5.0)
    assert ids == (torch.eye(8)[3] @ W_U).topk(3).indices.tolist()


def test_llm_explainer_speaks_the_openai_chat_protocol():
    """A real HTTP round trip to a local OpenAI-compatible server (no network, no key needed)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from saekit.errors import DataError
    from saekit.evaluation.llm import llm_explain

    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["path"] = self.path
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": " 'lord' after 'my' \n"}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ctx = [{"text": [" my", " lord", ","], "acts": [0.0, 2.5, 0.0]}]
        url = f"http://127.0.0.1:{server.server_port}/v1"
        assert llm_explain(ctx, url, "local-model") == "'lord' after 'my'"
        assert seen["path"] == "/v1/chat/completions" and seen["body"]["model"] == "local-model"
        assert "<< lord:2.50>>" in seen["body"]["messages"][0]["content"]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(DataError, match="could not be reached"):
        llm_explain(ctx, url, "local-model", timeout=2)


def test_autointerp_reads_token_ids_from_activation_caches(text, tmp_path):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from saekit.activations import build_cache
    from saekit.evaluation.autointerp import autointerp_from_caches, grid_from_cache

    tok, train, test = text
    train, test = train[:40], test[:20]
    model = HookedTransformer(
        HookedTransformerConfig(
            n_layers=1,
            d_model=32,
            n_heads=2,
            d_head=16,
            d_mlp=64,
            n_ctx=64,
            d_vocab=len(tok),
            act_fn="gelu",
            normalization_type="LN",
            seed=0,
        )
    ).eval()
    hook = "blocks.0.hook_resid_post"
    tr = build_cache(model, train, [hook], tmp_path / "train", progress=False)
    te = build_cache(model, test, [hook], tmp_path / "test", progress=False)
    tokens, acts, present = grid_from_cache(tr)
    assert tokens.shape == train.shape and not present[:, 0].any() and present[:, 1:].all()  # BOS not cached
    assert torch.equal(tokens[:, 1:], train[:, 1:])
    with torch.no_grad():
        _, c_tr = model.run_with_cache(train, names_filter=hook)
        _, c_te = model.run_with_cache(test, names_filter=hook)
    assert torch.allclose(acts[:, 1:], c_tr[hook][:, 1:], atol=1e-5)

    sae = create(DictionaryConfig(kind="topk", d_in=32, n_latents=64, k=4, hook_name=hook), seed=0)
    via_cache = autointerp_from_caches(sae, tr, te, tokenizer=tok)
    keep = lambda t: np.arange(t.numel()) % t.shape[1] != 0  # noqa: E731
    direct = autointerp(
        collect_acts(sae, c_tr[hook]).restrict(keep(train)),
        train,
        collect_acts(sae, c_te[hook]).restrict(keep(test)),
        test,
        tokenizer=tok,
        W_dec=sae.W_dec,
    )
    assert [r["latent"] for r in via_cache["latents"]] == [r["latent"] for r in direct["latents"]]
    assert via_cache["f1_values"] == pytest.approx(direct["f1_values"], abs=1e-9)
    assert via_cache["n_latents_explained"] > 10
