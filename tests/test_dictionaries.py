"""Dictionary architectures: parameter names and shapes, encode/decode identities, init, folding."""

import math

import pytest
import torch

import saekit
from saekit.config import DictionaryConfig
from saekit.dictionaries import create, geometric_median
from saekit.errors import ConfigError

KINDS = ["relu", "topk", "batchtopk", "jumprelu", "matryoshka", "abstopk", "gated"]


def make(kind, d_in=16, n=48, **kw):
    kw.setdefault("k", 4)
    return create(DictionaryConfig(kind=kind, d_in=d_in, n_latents=n, **kw), seed=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["sae", "transcoder", "skip"])
def test_parameter_names_shapes_and_forward(kind, variant):
    extra = {"sae": {}, "transcoder": {"d_out": 8}, "skip": {"d_out": 8, "skip": True}}[variant]
    sae = make(kind, **extra)
    d_out = extra.get("d_out", 16)
    shapes = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    bias = "b_gate" if kind == "gated" else "b_enc"  # SAELens's names: a gated SAE has no b_enc
    assert shapes["W_enc"] == (16, 48) and shapes[bias] == (48,)
    if kind == "gated":
        assert shapes["b_mag"] == shapes["r_mag"] == (48,) and "b_enc" not in shapes
    assert shapes["W_dec"] == (48, d_out) and shapes["b_dec"] == (d_out,)
    assert ("W_skip" in shapes) == (variant == "skip")
    if variant == "skip":
        assert shapes["W_skip"] == (d_out, 16)
    if kind in ("jumprelu", "batchtopk", "matryoshka"):
        assert shapes["threshold"] == (48,)
    torch.manual_seed(0)
    x = torch.randn(10, 16)
    if variant == "skip":  # W_skip starts at zero: give it values so the skip path is exercised
        with torch.no_grad():
            sae.W_skip.normal_()
    sae.to_inference()
    z = sae.encode(x)
    assert z.shape == (10, 48)
    # forward = decode(encode(x)) (+ skip path), with decoder rows of unit norm
    expected = z @ sae.W_dec + sae.b_dec
    if variant == "skip":
        skip = x @ sae.W_skip.T
        assert skip.abs().mean() > 0.5  # the skip term is a large part of the output
        expected = expected + skip
    torch.testing.assert_close(sae(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(48))


def test_topk_encode_sparse_matches_dense_and_k():
    sae = make("topk")
    x = torch.randn(12, 16)
    vals, idx = sae.encode_sparse(x)
    assert vals.shape == idx.shape == (12, 4)
    z = sae.encode(x)
    dense = torch.zeros_like(z).scatter_(1, idx, vals)
    torch.testing.assert_close(dense, z)
    assert ((z != 0).sum(-1) <= 4).all()
    # the kept values are the largest pre-activations
    pre = sae.pre_acts(x)
    assert torch.equal(torch.sort(idx, -1).values, torch.sort(pre.topk(4, -1).indices, -1).values)


def test_relu_is_relu_of_affine_map():
    sae = make("relu")
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_()
    x = torch.randn(5, 16)
    torch.testing.assert_close(sae.encode(x), torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc))


def test_tied_init_and_random_init_and_determinism():
    tied = make("topk")
    torch.testing.assert_close(tied.W_enc, tied.W_dec.T)
    untied = make("topk", init_encoder_from_decoder=False)
    assert not torch.allclose(untied.W_enc, untied.W_dec.T)
    again = make("topk")
    for a, b in zip(tied.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)  # same config + seed -> same bytes
    other = create(tied.cfg, seed=1)
    assert not torch.equal(other.W_dec, tied.W_dec)


def test_transcoder_zero_init_decoder():
    sae = make("topk", d_out=8, zero_init_decoder=True)
    assert torch.count_nonzero(sae.W_dec) == 0
    assert not sae.unit_norm_decoder  # a zero row cannot be renormalised
    assert sae.W_enc.abs().sum() > 0


def test_geometric_median_matches_scipy_minimiser():
    scipy_opt = pytest.importorskip("scipy.optimize")
    torch.manual_seed(0)
    pts = torch.randn(200, 5)
    pts[:10] += 50.0  # outliers drag the mean, not the median
    gm = geometric_median(pts, max_iter=500, tol=1e-10)

    def cost(y):
        return float((pts.double() - torch.as_tensor(y)).norm(dim=-1).sum())

    ref = scipy_opt.minimize(
        cost,
        pts.mean(0).double().numpy(),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20000},
    ).x
    assert cost(gm.double().numpy()) <= cost(ref) + 1e-6
    assert (gm - pts.mean(0)).norm() > 1.0  # robust: far from the outlier-dragged mean


def test_fold_act_scale_keeps_the_function():
    for kind in KINDS:
        sae = make(kind, d_out=8, skip=True)
        with torch.no_grad():
            sae.b_dec.normal_()
            sae.W_skip.normal_()
            sae.act_scale.fill_(3.7)
        x = torch.randn(6, 16)
        sae.to_inference()
        before, z_before = sae(x), sae.encode(x)
        sae.fold_act_scale()
        assert float(sae.act_scale) == 1.0
        torch.testing.assert_close(sae(x), before, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(sae.encode(x), z_before, atol=1e-4, rtol=1e-4)


def test_batchtopk_batch_level_selection_and_threshold():
    sae = make("batchtopk", k=3)
    x = torch.randn(20, 16)
    out = sae.training_loss(x)
    pre = sae.pre_acts(x)
    z = sae.batch_topk(pre)
    assert int((z != 0).sum()) == 3 * 20  # k per token on average, not per token
    assert int(sae.threshold_updates) == 1
    assert float(sae.threshold[0]) == pytest.approx(float(z[z > 0].min().detach()))
    assert out.l0.item() == pytest.approx(3.0)
    sae.to_inference()
    zi = sae.encode(x)
    assert torch.equal(zi != 0, pre > sae.threshold)  # per-token rule after to_inference


def test_jumprelu_threshold_learns_through_straight_through_estimator():
    eps, theta, lam = 0.5, 0.2, 1.0
    sae = make("jumprelu", sparsity_coef=lam, jumprelu_bandwidth=eps, jumprelu_init_threshold=theta)
    x = torch.randn(64, 16)
    pre = sae.pre_acts(x).detach()
    window = ((pre - theta).abs() < eps / 2).float()  # rectangle kernel K((pre - θ)/ε)
    # L0 term: d/dθ [λ · mean_b Σ_i H(pre_bi − θ_i)] = −λ/ε · mean_b K((pre_bi − θ_i)/ε)
    out = sae.training_loss(x)
    assert "sparsity" in out.terms
    out.terms["sparsity"].backward()
    expected_l0 = -(lam / eps) * window.mean(0)
    torch.testing.assert_close(sae.threshold.grad, expected_l0)
    assert (sae.threshold.grad != 0).any()
    # codes z = pre · H(pre − θ): with upstream gradient g, d/dθ Σ z·g = −θ/ε · Σ_b K(...) · g_b
    sae.threshold.grad = None
    _, z = sae.train_codes(x)
    g = torch.randn_like(z)
    (z * g).sum().backward()
    torch.testing.assert_close(sae.threshold.grad, -(theta / eps) * (window * g).sum(0))


@pytest.mark.parametrize("penalty", ["l1", "l1_decnorm", "tanh", "log", "lp"])
def test_relu_penalties_and_warmup(penalty):
    sae = make("relu", penalty=penalty, sparsity_coef=2.0, sparsity_warmup_steps=10)
    with torch.no_grad():
        sae.W_dec.mul_(2.0)  # decoder norm 2 enters every penalty
    x = torch.randn(8, 16)
    z = sae.encode(x)
    u = 2.0 * z
    expected = (
        {
            "l1": u,
            "l1_decnorm": u,
            "tanh": torch.tanh(u),
            "log": torch.log1p(u**2),
            "lp": (u + 1e-6) ** 0.5 - 1e-6**0.5,
        }[penalty]
        .sum(-1)
        .mean()
    )
    assert "sparsity" not in sae.training_loss(x, step=0).terms  # warm-up starts at 0
    half = sae.training_loss(x, step=5).terms["sparsity"]
    torch.testing.assert_close(half, 2.0 * 0.5 * expected, rtol=1e-4, atol=1e-5)
    assert sae.unit_norm_decoder == (penalty != "l1_decnorm")


def test_auxk_only_on_dead_latents():
    sae = make("topk", k=2, k_aux=4)
    x = torch.randn(16, 16)
    assert "aux" not in sae.training_loss(x, dead_mask=torch.zeros(48, dtype=torch.bool)).terms
    dead = torch.zeros(48, dtype=torch.bool)
    dead[:10] = True
    out = sae.training_loss(x, dead_mask=dead)
    assert out.terms["aux"] > 0
    sae.zero_grad()
    out.terms["aux"].backward()
    g = sae.W_dec.grad.abs().sum(-1)
    assert g[10:].sum() == 0 and g[:10].sum() > 0  # AuxK trains dead decoder rows only


def test_bad_configs_are_one_sentence():
    with pytest.raises(ConfigError, match=r"^k must be an integer in 1\.\.n_latents \(48\), got 100\.$"):
        DictionaryConfig(kind="topk", d_in=16, n_latents=48, k=100)
    with pytest.raises(ConfigError, match=r"^kind 'gatd' is not known; expected one of"):
        DictionaryConfig(kind="gatd", d_in=16, n_latents=48)
    with pytest.raises(ConfigError, match=r"^matryoshka_inner_weight must be a number ≥ 0, got -1\.0\.$"):
        DictionaryConfig(kind="matryoshka", d_in=16, n_latents=48, k=4, matryoshka_inner_weight=-1.0)
    with pytest.raises(ConfigError, match=r"^lp_anneal_start must be an integer ≥ 0, got -3\.$"):
        DictionaryConfig(kind="relu", d_in=16, n_latents=48, penalty="lp", lp_anneal_start=-3)
    with pytest.raises(ConfigError, match=r"^lr must be > 0, got -0\.1\.$"):
        saekit.TrainConfig(lr=-0.1)
    with pytest.raises(ConfigError, match="lr must be > 0"):
        saekit.TrainConfig(lr=0.0)


def test_public_api_names():
    cfg = saekit.DictionaryConfig(kind="topk", d_in=16, n_latents=32, k=2)
    sae = saekit.dictionaries.create(cfg)
    assert sae.cfg is cfg and callable(saekit.train)
    assert math.isclose(float(sae.act_scale), 1.0)


def test_multi_topk_term_is_the_4k_reconstruction_over_8():
    sae = make("topk", k=2, multi_topk=True)
    x = torch.randn(16, 16)
    out = sae.training_loss(x)
    vals, idx = sae.select(sae.pre_acts(x), 8)
    x4 = torch.zeros(16, 48).scatter_(1, idx, vals) @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(out.terms["multi_topk"], (x4 - x).pow(2).sum(-1).mean() / 8)
    assert out.l0.item() == 2.0  # the main codes stay at k


def test_relu_resampling_points_dead_latents_at_badly_reconstructed_inputs():
    from saekit.training.resample import resample_dead

    sae = make("relu")
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.randn(32, 16)
    sae.training_loss(x).loss.backward()
    opt.step()
    dead = torch.zeros(48, dtype=torch.bool)
    dead[[3, 7]] = True
    with torch.no_grad():
        residual = x - sae(x)
    n = resample_dead(sae, opt, dead, x, None, torch.Generator().manual_seed(0))
    assert n == 2
    dirs = residual / residual.norm(dim=-1, keepdim=True)
    for i in (3, 7):
        # each new decoder row is the unit residual of one of the batch's inputs
        assert (dirs @ sae.W_dec[i]).max() > 1 - 1e-5
        assert sae.b_enc[i] == 0
        assert opt.state[sae.W_dec]["exp_avg"][i].abs().sum() == 0
    alive_norm = sae.W_enc[:, ~dead].norm(dim=0).mean()
    torch.testing.assert_close(sae.W_enc[:, 3].norm(), 0.2 * alive_norm, rtol=1e-4, atol=1e-6)


def test_jumprelu_quadratic_loss_pulls_l0_toward_the_target_from_both_sides():
    for target, direction in ((2.0, +1), (40.0, -1)):  # too many active -> θ up; too few -> θ down
        sae = make("jumprelu", jumprelu_sparsity_loss="quadratic", target_l0=target, sparsity_coef=1.0, jumprelu_bandwidth=10.0)
        x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
        pre = sae.pre_acts(x)
        l0 = (pre > sae.threshold).float().sum(-1)
        loss = sae.sparsity_loss(pre, sae.activation(pre), step=0)["sparsity"]
        torch.testing.assert_close(loss, (2 / target * (l0 - target).pow(2)).mean())
        loss.backward()
        assert direction * float(-sae.threshold.grad.sum()) > 0  # gradient descent moves θ in `direction`


def test_jumprelu_tanh_loss_value():
    sae = make("jumprelu", jumprelu_sparsity_loss="tanh", jumprelu_tanh_scale=4.0, sparsity_coef=0.5)
    x = torch.randn(8, 16)
    pre, z = sae.train_codes(sae.scale_in(x))
    want = 0.5 * torch.tanh(4.0 * z * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    torch.testing.assert_close(sae.sparsity_loss(pre, z, step=0)["sparsity"], want)


def test_gated_codes_init_and_the_auxiliary_loss_reaching_the_decoder():
    sae = make("gated", sparsity_coef=0.0)
    # the encoder starts at 0.3 × its tied init (session 7: docs/dictionaries.md, gated)
    torch.testing.assert_close(sae.W_enc, 0.3 * sae.W_dec.T)
    with torch.no_grad():
        sae.r_mag.normal_()
        sae.b_mag.normal_()
        sae.b_gate.normal_()
    x = torch.randn(10, 16)
    xc = x - sae.b_dec
    gate = xc @ sae.W_enc + sae.b_gate
    z = (gate > 0) * torch.relu(xc @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag)
    torch.testing.assert_close(sae.encode(x), z)
    out = sae.training_loss(x)
    want = (torch.relu(gate) @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean()
    torch.testing.assert_close(out.terms["aux_gate"], want)
    out.terms["aux_gate"].backward()
    # not detached (SAELens's choice): the decoder learns from the gate's reconstruction too
    assert float(sae.W_dec.grad.abs().sum()) > 0 and float(sae.b_dec.grad.abs().sum()) > 0
    assert float(sae.W_enc.grad.abs().sum()) > 0 and float(sae.b_gate.grad.abs().sum()) > 0


def test_lp_annealing_steps_p_and_keeps_the_penalty_continuous():
    sae = make("relu", penalty="lp", lp=0.25, lp_anneal_start=10, lp_anneal_steps=30, lp_anneal_updates=3)
    assert [sae.lp_stage_at(s) for s in (0, 9, 10, 19, 20, 30, 39, 40, 500)] == [0, 0, 0, 0, 1, 2, 2, 3, 3]
    z = torch.rand(32, 48)
    before = sae.sparsity_loss(None, z, step=19)["sparsity"]
    after = sae.sparsity_loss(None, z, step=20)["sparsity"]  # p: 1 -> 0.75, λ rescaled on this batch
    assert sae.current_p == 0.75
    torch.testing.assert_close(after, before)
    assert float(sae.lp_coef_scale) < 1.0  # u^0.75 > u for u < 1: λ shrinks to compensate
