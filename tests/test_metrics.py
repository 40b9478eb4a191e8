"""Core metrics against hand-computed values; splice metrics against transformer-lens' own loss."""

import math

import pytest
import torch
from tiny_models import tiny_hooked_transformer

from saekit.config import DictionaryConfig
from saekit.dictionaries import create
from saekit.evaluation import evaluate
from saekit.evaluation.metrics import dictionary_metrics, reconstruction_metrics
from saekit.evaluation.splice import splice_metrics


def test_metrics_match_hand_computed_values():
    y = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y_hat = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 3.0, 0.0]])
    m = reconstruction_metrics(y, y_hat, z)
    # squared error: 0 + 1 over 4 elements; mean y = [0.5, 1]; total variance = 1.25 + 1.25
    assert m["mse"] == pytest.approx(0.25)
    assert m["fvu"] == pytest.approx(1 / 2.5)
    assert m["explained_variance"] == pytest.approx(0.6)
    assert m["cosine"] == pytest.approx(1.0)
    assert m["shrinkage"] == pytest.approx((1.0 + 0.5) / 2)  # ||ŷ||/||y|| per token
    assert m["relative_reconstruction_bias"] == pytest.approx(2 / 3)  # ŷ·ŷ = 2, ŷ·y = 3
    assert m["l0"] == pytest.approx(1.5)
    assert m["l0_std"] == pytest.approx(0.5)
    assert m["dead_fraction"] == pytest.approx(0.25)  # the last latent never fires
    assert m["dense_fraction"] == pytest.approx(0.75)  # three latents fire on 50 % > 10 %
    assert m["density"] == pytest.approx([0.5, 0.5, 0.5, 0.0])
    assert sum(m["density_log10_hist"]["counts"]) == 3  # dead latents are not in the log histogram


def test_cosine_and_dense_threshold_by_hand():
    y = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y_hat = torch.tensor([[4.0, 3.0], [0.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    z = torch.zeros(4, 20)
    z[0, 0] = 1.0  # latent 0 fires on 1/4 tokens (> 10 %: dense); latent 1 on 0 tokens
    m = reconstruction_metrics(y, y_hat, z)
    assert m["cosine"] == pytest.approx((24 / 25 + 0 + 1 + 1) / 4)
    assert m["shrinkage"] == pytest.approx((1 + 1 + 2 + 1) / 4)
    assert m["dense_fraction"] == pytest.approx(1 / 20)
    assert m["dead_fraction"] == pytest.approx(19 / 20)
    assert m["l0_quantiles"]["p50"] == 0


def _topk(d_in=16, n=64, k=4, d_out=None, seed=0):
    return create(DictionaryConfig(kind="topk", d_in=d_in, n_latents=n, k=k, d_out=d_out), seed=seed)


def test_dictionary_metrics_agree_with_direct_computation_and_batch_size():
    torch.manual_seed(0)
    sae = _topk()
    x = torch.randn(300, 16) * 2 + 1
    a = dictionary_metrics(sae, x, batch_size=7)
    b = dictionary_metrics(sae, x, batch_size=1000)
    with torch.no_grad():
        x_hat, z = sae(x), sae.encode(x)
    fvu = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert a["fvu"] == pytest.approx(float(fvu), rel=1e-5)
    assert a["l0"] == pytest.approx(4.0)  # top-k with non-negative codes: exactly k per token
    assert a["dead_fraction"] == pytest.approx(float(((z != 0).sum(0) == 0).float().mean()))
    for key in ("fvu", "mse", "cosine", "shrinkage", "l0", "dead_fraction"):
        assert a[key] == pytest.approx(b[key], rel=1e-6)  # float32 matmuls differ by batch
    dense = reconstruction_metrics(x, x_hat, z)  # the dense path, against the sparse top-k path
    for key in ("fvu", "cosine", "shrinkage", "l0", "l0_std", "dead_fraction", "dense_fraction"):
        assert a[key] == pytest.approx(dense[key], rel=1e-5, abs=1e-12)
    assert a["density"] == pytest.approx(dense["density"])


def test_transcoder_metrics_use_the_target_activations():
    torch.manual_seed(0)
    tc = _topk(d_in=8, n=32, k=3, d_out=12)
    x, y = torch.randn(50, 8), torch.randn(50, 12)
    m = dictionary_metrics(tc, (x, y))
    with torch.no_grad():
        y_hat = tc(x)
    assert m["mse"] == pytest.approx(float(((y - y_hat) ** 2).mean()), rel=1e-6)


# --------------------------------------------------------------------------- splicing


@pytest.fixture(scope="module")
def model():
    return tiny_hooked_transformer(d_model=32, d_head=8, d_mlp=64, n_ctx=16, d_vocab=97)


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 97, (6, 16), generator=g)


def identity_dictionary(d: int):
    """A real top-k dictionary that reconstructs exactly: latents ±e_i, k = d (one sign per dim)."""
    sae = _topk(d_in=d, n=2 * d, k=d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_identity_reconstruction_recovers_all_ce_loss(model, tokens):
    hook = "blocks.0.hook_resid_post"
    m = splice_metrics(identity_dictionary(32), model, tokens, hook_name=hook, batch_size=4)
    assert m["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert m["ce_loss_recovered_mean_ablation"] == pytest.approx(1.0, abs=1e-4)
    assert m["kl_div"] == pytest.approx(0.0, abs=1e-6)
    assert m["delta_loss"] == pytest.approx(0.0, abs=1e-5)
    assert m["zero_ablation_loss"] > m["clean_loss"]


def _tl_loss(model, tokens, hook, fn):
    """Reference loss: transformer-lens' own loss with position 0 kept as is."""

    def hook_fn(act, hook):
        new = fn(act)
        new[:, 0] = act[:, 0]
        return new

    with torch.no_grad():
        return float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, hook_fn)]))


def test_ce_loss_recovered_matches_its_definition_for_zero_ablation(model, tokens):
    hook = "blocks.1.hook_resid_pre"
    torch.manual_seed(0)
    sae = _topk(d_in=32, n=128, k=8)
    m = splice_metrics(sae, model, tokens, hook_name=hook, batch_size=4)
    with torch.no_grad():
        clean = float(model(tokens, return_type="loss"))
    zero = _tl_loss(model, tokens, hook, torch.zeros_like)
    with torch.no_grad():
        spliced = _tl_loss(model, tokens, hook, lambda a: sae(a.reshape(-1, 32)).reshape(a.shape))
    assert m["clean_loss"] == pytest.approx(clean, rel=1e-5)
    assert m["zero_ablation_loss"] == pytest.approx(zero, rel=1e-5)
    assert m["spliced_loss"] == pytest.approx(spliced, rel=1e-5)
    assert m["ce_loss_recovered"] == pytest.approx((zero - spliced) / (zero - clean), rel=1e-4)
    assert m["delta_loss"] == pytest.approx(spliced - clean, rel=1e-4)
    assert m["kl_div"] > 0


def test_mean_ablation_uses_the_mean_activation(model, tokens):
    hook = "blocks.0.hook_mlp_out"
    sae = _topk(d_in=32, n=64, k=4)
    m = splice_metrics(sae, model, tokens, hook_name=hook, batch_size=6)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook)
    mean = cache[hook][:, 1:].reshape(-1, 32).mean(0)
    ref = _tl_loss(model, tokens, hook, lambda a: mean.expand_as(a).clone())
    assert m["mean_ablation_loss"] == pytest.approx(ref, rel=1e-5)


def test_skip_bos_false_splices_position_zero_too(model, tokens):
    """skip_bos=True (default) keeps position 0 clean; skip_bos=False ablates it with the rest."""
    hook = "blocks.1.hook_resid_pre"
    sae = _topk(d_in=32, n=64, k=4)
    m = splice_metrics(sae, model, tokens, hook_name=hook, batch_size=4, skip_bos=False)
    with torch.no_grad():
        everywhere = float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, lambda a, hook: a * 0)]))
    kept = _tl_loss(model, tokens, hook, torch.zeros_like)
    assert m["zero_ablation_loss"] == pytest.approx(everywhere, rel=1e-5)
    assert abs(everywhere - kept) > 1e-3  # position 0 matters, so the two settings differ
    assert splice_metrics(sae, model, tokens, hook_name=hook, batch_size=4)["zero_ablation_loss"] == pytest.approx(
        kept, rel=1e-5
    )


def test_transcoder_replaces_the_mlp_output(model, tokens):
    torch.manual_seed(0)
    tc = _topk(d_in=32, n=96, k=6, d_out=32)
    tc.cfg.transcoder = True
    m = splice_metrics(tc, model, tokens, hook_name="blocks.1.ln2.hook_normalized", batch_size=4)
    assert m["mlp_replacement"] and m["splice_hook"] == "blocks.1.hook_mlp_out"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.ln2.hook_normalized")
        pred = tc(cache["blocks.1.ln2.hook_normalized"].reshape(-1, 32)).reshape(6, 16, 32)
    ref = _tl_loss(model, tokens, "blocks.1.hook_mlp_out", lambda a: pred.clone())
    zero = _tl_loss(model, tokens, "blocks.1.hook_mlp_out", torch.zeros_like)
    assert m["spliced_loss"] == pytest.approx(ref, rel=1e-5)
    assert m["zero_ablation_loss"] == pytest.approx(zero, rel=1e-5)


def test_evaluate_with_model_adds_splice_metrics(model, tokens):
    hook = "blocks.0.hook_resid_post"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook)
    acts = cache[hook]
    m = evaluate(identity_dictionary(32), acts, model=model, tokens=tokens, hook_name=hook)
    assert m["fvu"] == pytest.approx(0.0, abs=1e-10)
    assert m["l0"] <= 32 and not math.isnan(m["ce_loss_recovered"])
    assert "density" not in m


def test_splice_into_a_plain_hugging_face_model_by_module_path():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=16, vocab_size=97)).eval()
    tokens = torch.randint(0, 97, (4, 16), generator=torch.Generator().manual_seed(2))
    hook = "transformer.h.0.mlp"
    m = splice_metrics(identity_dictionary(32), hf, tokens, hook_name=hook, batch_size=2)
    assert m["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-4) and m["kl_div"] == pytest.approx(0.0, abs=1e-6)

    def zero_mlp(_mod, _inp, out):
        new = torch.zeros_like(out)
        new[:, 0] = out[:, 0]
        return new

    handle = hf.get_submodule(hook).register_forward_hook(zero_mlp)
    try:
        with torch.no_grad():
            zero = float(hf(tokens, labels=tokens).loss)  # HF's own shifted cross-entropy
    finally:
        handle.remove()
    assert m["zero_ablation_loss"] == pytest.approx(zero, rel=1e-5)


def test_evaluate_on_a_live_activation_stream_needs_a_token_budget(model, tokens):
    from saekit.activations import ActivationStream
    from saekit.errors import ConfigError

    hook = "blocks.0.hook_resid_post"
    stream = ActivationStream(model, tokens, hook, buffer_tokens=64, prefetch=False)
    with pytest.raises(ConfigError, match="max_tokens"):
        evaluate(identity_dictionary(32), stream)
    m = evaluate(identity_dictionary(32), stream, max_tokens=50, batch_size=16)
    assert m["n_tokens"] == 50 and m["fvu"] == pytest.approx(0.0, abs=1e-10)
