"""Quality at the defaults (issue 21): every kind, with no learning rate and no sparsity coefficient
given, recovers planted features on data of any scale; the quality guard warns on an under-trained
and on a collapsed run and stays silent on a good one.

Data: 64-d activations built from 256 unit-norm features, ~3 active per token (tests/synthetic.py),
scaled two ways: E||x||² = d (the scale Anthropic's λ was chosen for) and E||x||² = d / 10⁴ (far
below d; the old defaults collapsed ReLU there, and top-k kinds, not normalised then, lost features).
Every kind is now normalised by default, so both scales must give the same figures.

The MMCS bars are per kind, a little under what each reached at the session-6 defaults
(2026-12-01, benchmarks/defaults_recovery.py; docs/dictionaries.md "Recovery of planted features";
an untrained decoder: 0.37). Kinds below issue 21's 0.95 are named in MISSES. JumpReLU at its
defaults on both scales is in tests/test_jumprelu_defaults.py (MMCS ≥ 0.95).
"""

import logging

import pytest
import torch
from synthetic import feature_recovery, sparse_feature_data

from saekit import DictionaryConfig, TrainConfig
from saekit.config import DICTIONARY_KINDS, TOPK_KINDS, default_betas, default_lr, default_warmup
from saekit.dictionaries import create
from saekit.errors import ConfigError
from saekit.training import Trainer
from saekit.training.guard import quality_warnings
from saekit.training.spread import participation_ratio, spread_factor

D, N_LATENTS = 64, 512  # two latents per planted feature
KINDS = {"topk": {"k": 3}, "batchtopk": {"k": 3}, "matryoshka": {"k": 3}, "abstopk": {"k": 3}, "relu": {}, "gated": {}}
KINDS["relu_lp"] = {"kind": "relu", "penalty": "lp"}  # annealed Lp at its defaults: p 1 -> 0.5 from a third of the run
# (MMCS, fraction matched at cos > 0.9): bars a little under the session-6 measurements at both
# scales (equal, normalised): topk 0.989/0.97, batchtopk 0.963/0.91 (600k tokens; 0.893 at 150k, 0.935
# at 300k), abstopk 0.971/0.95, relu 0.986/0.97 (L0 8.6), gated 0.973/0.95 at session 6 (300k; 0.913 at 150k);
# matryoshka (session 7: inner prefixes weighted 0.15) 0.971/0.93 and 0.973/0.93 (600k; 0.942 at 300k;
# 0.914/0.76 with every prefix weighted 1, as SAELens)
BARS = {
    "topk": (0.95, 0.90),
    # session 9 (W_dec at 3x the rate, b_dec at 0.3x): 0.991/0.98 and 0.983/0.94 at 150k tokens, where
    # the decoder at the run's rate reached 0.973 and 0.962 (benchmarks/RESULTS.md, "Session 9")
    "batchtopk": (0.98, 0.95),
    "matryoshka": (0.975, 0.90),
    "abstopk": (0.95, 0.90),
    "relu": (0.95, 0.90),
    "gated": (0.95, 0.93),  # session 7 (aux term reaching the decoder, encoder at 0.3× init): 0.987/0.98 at 150k
    "relu_lp": (0.95, 0.92),  # session 7: 0.978/0.96 and 0.979/0.96 (L0 5.7: sparser than L1's 8.6)
}
MISSES: set[str] = set()  # kinds below issue 21's 0.95 at a test's budget (docs/dictionaries.md): none since session 7
TOKENS = 150_000  # every kind (batchtopk and matryoshka needed 600k before session 9)
# batchtopk and matryoshka were still learning at the end before session 9 (MMCS 0.893 / 0.935 / 0.963
# at 150k / 300k / 600k tokens): the guard may say "under-trained"; gated at 150k finds the features
# (0.987) with its FVU still falling (0.136 to 0.127 over the last 10 %: 3 % of its gain)
STILL_LEARNING = {"batchtopk", "matryoshka", "gated"}
BATCH = 512


@pytest.fixture(scope="module")
def planted():
    X, feats = sparse_feature_data(n=30_000, d=D, n_features=256, mean_active=3.0, seed=0)
    at_d = X * (D / X.pow(2).sum(-1).mean()).sqrt()
    return {"norm_d": at_d, "norm_tiny": at_d * 1e-2}, feats


def fit(cfg, X, tcfg):
    trainer = Trainer(cfg, X, tcfg, progress=False)
    sae = trainer.fit()[0]
    return sae, trainer.metrics.records


def recovery(kind, feats, W_dec):
    """feature_recovery, with |cos| for abstopk (a signed latent may hold a feature as its negative)."""
    if kind != "abstopk":
        return feature_recovery(feats, W_dec)
    W = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (feats @ W.T).abs().max(1).values
    return float(best.mean()), float((best > 0.9).float().mean())


@pytest.mark.parametrize("scale", ["norm_d", "norm_tiny"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_recovers_features_at_its_defaults(kind, scale, planted, caplog):
    sets, feats = planted
    X = sets[scale]
    cfg = DictionaryConfig(**{"kind": kind, **KINDS[kind]}, d_in=D, n_latents=N_LATENTS)
    tcfg = TrainConfig(batch_size=BATCH, total_tokens=TOKENS, seed=0, device="cpu")
    assert tcfg.lr is None and tcfg.normalize is None  # the defaults
    with caplog.at_level(logging.WARNING, logger="saekit.training"):
        sae, _ = fit(cfg, X, tcfg)
    mmcs, matched = recovery(kind, feats, sae.W_dec.detach())
    with torch.no_grad():
        x = X[:4000]
        fvu = float((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        l0 = float((sae.encode(x) != 0).sum(-1).float().mean())
    assert mmcs >= BARS[kind][0] and matched >= BARS[kind][1], f"{kind} on {scale}: MMCS {mmcs:.3f} / {matched:.2f} (FVU {fvu:.3f}, L0 {l0:.1f})"
    assert fvu < 0.3 and 1 <= l0 < 12, f"{kind} on {scale}: FVU {fvu:.3f}, L0 {l0:.1f}"
    if kind == "relu_lp":  # annealed to the target p by the end of the run, by default
        assert sae.current_p == 0.5 and int(sae.lp_stage) == cfg.lp_anneal_updates and l0 < 7
    messages = [r.getMessage() for r in caplog.records]
    if scale == "norm_d" and kind not in STILL_LEARNING:  # a good run: the guard is silent
        assert not messages, messages
    else:  # still improving at this budget: the guard may say so, and nothing else
        assert all("under-trained" in m for m in messages), messages


def test_the_misses_are_the_kinds_below_the_issues_bar():
    assert MISSES == {k for k, (bar, _) in BARS.items() if bar < 0.95}


def test_a_top_k_decoder_steps_at_its_own_rates(planted):
    """W_dec at 3x the run's rate and b_dec at 0.3x for single-source topk, batchtopk and matryoshka,
    everything at the run's rate for abstopk, a penalty kind and a crosscoder, and a user's values
    kept (docs/training.md)."""
    sets, _ = planted
    cfgs = [DictionaryConfig(kind=k, d_in=D, n_latents=64, **KINDS[k]) for k in ("topk", "matryoshka", "relu", "abstopk")]
    cfgs.append(DictionaryConfig(kind="topk", d_in=D, n_latents=64, k=3, W_dec_lr_scale=1.5, b_dec_lr_scale=0.0))
    trainer = Trainer(cfgs, sets["norm_d"], TrainConfig(batch_size=BATCH, total_tokens=BATCH * 10, device="cpu"), progress=False)
    start = trainer.runs[4].sae.b_dec.detach().clone()
    trainer.step(*trainer.next_batch())
    want = [(3.0, 0.3), (3.0, 0.3), (1.0, 1.0), (1.0, 1.0), (1.5, 0.0)]
    for run, (w_dec, b_dec) in zip(trainer.runs, want):
        lr_of = {id(p): g["lr"] for g in run.optimizer.param_groups for p in g["params"]}
        base = lr_of[id(run.sae.W_enc)]
        assert base > 0 and lr_of[id(run.sae.W_dec)] == pytest.approx(w_dec * base)
        assert lr_of[id(run.sae.b_dec)] == pytest.approx(b_dec * base)
    assert trainer.runs[4].sae.b_dec.detach().equal(start)  # rate 0: b_dec stays at its init
    cross = DictionaryConfig(kind="topk", d_in=D, n_latents=64, k=3, n_sources=2)
    assert (cross.decoder_lr_scale(), cross.b_dec_lr_scale) == (1.0, 1.0)


def test_a_crowded_top_k_dictionary_steps_its_decoder_faster():
    """W_dec's multiple is the kind's 3x unless the dictionary is both wide (over 16 latents per
    decoder dimension) and busy (k over an eighth of it); from there it rises to 20x at twice both
    (issue 21's row: 4096 latents, k 32, 128-d); kinds at 1x and a user's value stay."""
    def w_dec(**kw):
        steps = kw.pop("steps", 0)
        cfg = DictionaryConfig(**{"kind": "topk", "d_in": 128, "k": 32, **kw})
        return cfg.decoder_lr_scale(cfg.long_run_weight(steps, 1.0))

    assert w_dec(n_latents=4096) == 20.0 and w_dec(n_latents=4096, kind="matryoshka") == 20.0
    assert w_dec(n_latents=4096, k=24) == pytest.approx(11.5)  # busy x1.5, wide x2: half-way
    assert w_dec(n_latents=3072) == pytest.approx(11.5)  # wide x1.5, busy x2
    assert w_dec(n_latents=4096, k=16) == 3.0 and w_dec(n_latents=4096, k=8) == 3.0  # wide, not busy
    assert w_dec(n_latents=1024) == 3.0 and w_dec(n_latents=1024, k=128) == 3.0  # busy, not wide
    assert w_dec(n_latents=65536, k=128) == 20.0  # capped
    assert w_dec(n_latents=4096, d_in=64, d_out=128) == 20.0  # the decoder's rows' width counts
    assert w_dec(n_latents=4096, W_dec_lr_scale=2.0) == 2.0
    assert w_dec(n_latents=4096, kind="abstopk") == 1.0 and w_dec(n_latents=4096, kind="relu", k=None) == 1.0
    assert w_dec(n_latents=4096, n_sources=2) == 1.0
    # long runs (2048 steps or more, session 13): 120x at c = 2, the same ramp below, on spread-out data
    # (in full at spread 1, none at 0.5 or less); the rest as before
    assert w_dec(n_latents=4096, steps=2048) == 120.0 and w_dec(n_latents=4096, steps=2047) == 20.0
    topk = DictionaryConfig(kind="topk", d_in=128, k=32, n_latents=4096)
    assert topk.long_run_weight(10_000, 0.75) == 0.5 and topk.decoder_lr_scale(0.5) == 70.0
    assert topk.long_run_weight(10_000, 0.5) == 0.0 and topk.long_run_weight(2047, 1.0) == 0.0
    assert topk.replace(W_dec_lr_scale=20.0).long_run_weight(10_000, 1.0) == 0.0  # a given multiple: no long-run rule
    assert w_dec(n_latents=4096, k=24, steps=10_000) == pytest.approx(61.5)
    assert w_dec(n_latents=4096, k=16, steps=10_000) == 3.0 and w_dec(n_latents=4096, W_dec_lr_scale=2.0, steps=10_000) == 2.0
    assert w_dec(n_latents=4096, kind="abstopk", steps=10_000) == 1.0 and w_dec(n_latents=4096, n_sources=2, steps=10_000) == 1.0
    # batchtopk and matryoshka take half of the long-run rule (session 14): 0.875x the rate, W_dec 70x
    for kind in ("batchtopk", "matryoshka"):
        half = DictionaryConfig(kind=kind, d_in=128, k=32, n_latents=4096)
        assert half.long_run_weight(10_000, 1.0) == 0.5 and w_dec(n_latents=4096, kind=kind, steps=10_000) == 70.0
        assert half.long_run_weight(10_000, 0.75) == 0.25 and half.long_run_weight(2047, 1.0) == 0.0
    t = TrainConfig(batch_size=4096, total_tokens=10_000_000)
    gao = 2e-4 * (16384 / 4096) ** 0.5
    assert t.learning_rate(4096, 1.0, 0.5) == pytest.approx(2 * gao * 0.875)


def test_a_given_encoder_bias_rate_reaches_every_kind():
    """``b_enc_lr_scale`` (None: b_enc in the weights' group at the run's rate) gives every kind's
    encoder bias a group of its own at that multiple (gated's is b_gate); a negative one is refused."""
    for kind in DICTIONARY_KINDS:
        k = 2 if kind in TOPK_KINDS else None
        for given in (None, 0.5):
            sae = create(DictionaryConfig(kind=kind, d_in=8, n_latents=32, k=k, b_enc_lr_scale=given))
            scale_of = {id(p): g.get("lr_scale", 1.0) for g in sae.param_groups() for p in g["params"]}
            assert scale_of[id(sae.b_enc)] == (given or 1.0) and scale_of[id(sae.W_enc)] == 1.0, kind
    with pytest.raises(ConfigError, match="b_enc_lr_scale must be ≥ 0"):
        DictionaryConfig(kind="topk", d_in=8, n_latents=32, k=2, b_enc_lr_scale=-1.0)
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    tcfg = TrainConfig(batch_size=64, total_tokens=64 * 4, device="cpu", log_every=0)
    for given in (0.0, None):  # 0 holds b_enc where it starts; the default moves it
        trainer = Trainer(DictionaryConfig(kind="topk", d_in=8, n_latents=32, k=2, b_enc_lr_scale=given), x, tcfg, progress=False)
        start = trainer.runs[0].sae.b_enc.detach().clone()
        trainer.fit()
        assert torch.equal(trainer.runs[0].sae.b_enc, start) == (given == 0.0)


def test_default_schedule_adapts_to_the_run():
    # wider dictionaries get smaller steps; short runs a short warm-up and a larger rate
    assert default_lr(4096, 4096, 244) < default_lr(1024, 4096, 244)
    assert default_warmup(244) == 12 and default_warmup(100_000) == 100
    t = TrainConfig(batch_size=4096, total_tokens=1_000_000)
    assert t.learning_rate(4096) == default_lr(4096, 4096, 244) and t.warmup_steps() == 12
    assert TrainConfig(lr=1e-3, lr_warmup_steps=7).learning_rate(4096) == 1e-3
    # twice Gao et al.'s rate from 1024 steps on (session 10); below, lr·steps of a 2048-step run at
    # Gao's rate (the travel of the long run in fewer steps), at most 1e-2
    gao = 2e-4 * (16384 / 4096) ** 0.5
    assert default_lr(4096, 4096, 2048) == pytest.approx(2 * gao) and default_lr(4096, 4096, 100_000) == pytest.approx(2 * gao)
    assert default_lr(4096, 4096, 512) == pytest.approx(4 * gao) and default_lr(4096, 4096, 1024) == pytest.approx(2 * gao)
    assert default_lr(4096, 4096, 1500) == pytest.approx(2 * gao) and default_lr(4096, 4096, 800) == pytest.approx(2.56 * gao)
    assert default_lr(64, 4096, 1) == 1e-2  # the cap
    assert TrainConfig(lr_warmup_steps=7).warmup_steps() == 7
    # the data's spread scales a short run's boost (session 7), never below Gao's rate; a long run
    # keeps twice Gao's rate on data spread over few directions (an LM's residual stream, spread 0.19)
    assert default_lr(4096, 4096, 244, spread=0.5) == pytest.approx(default_lr(4096, 4096, 244) / 2)
    assert default_lr(4096, 4096, 244, spread=0.01) == pytest.approx(gao)
    assert default_lr(4096, 4096, 1500, spread=0.75) == pytest.approx(1.5 * gao)
    assert default_lr(4096, 4096, 4096, spread=0.1) == pytest.approx(2 * gao)
    assert t.learning_rate(4096, 0.5) == default_lr(4096, 4096, 244, 0.5)
    # a crowded dictionary's long run: 0.75x at crowding 1 on spread-out data (its decoder 120x instead),
    # in proportion to the crowding and to the spread above 0.5; short runs as before
    assert default_lr(4096, 4096, 2048, long_run=1.0) == pytest.approx(1.5 * gao)
    assert default_lr(4096, 4096, 100_000, long_run=0.5) == pytest.approx(1.75 * gao)
    assert default_lr(4096, 4096, 100_000, spread=0.19) == pytest.approx(2 * gao)
    assert TrainConfig(lr=1e-3).learning_rate(4096, 1.0, 1.0) == 1e-3
    assert TrainConfig(lr=1e-3).learning_rate(4096, 0.1) == 1e-3
    # Adam's betas (session 7): a short run's squared-gradient average must not outlast the run;
    # from 2048 steps on Gao et al.'s (0.9, 0.999); a given value wins
    assert t.betas() == default_betas(244) == (0.5, 0.95)
    assert default_betas(2047) == (0.5, 0.95) and default_betas(2048) == default_betas(100_000) == (0.9, 0.999)
    assert TrainConfig(adam_betas=[0.9, 0.99]).betas() == (0.9, 0.99)
    with pytest.raises(ConfigError, match="adam_betas"):
        TrainConfig(adam_betas=(1.0, 0.9))


def lm_like(X: torch.Tensor, share: float = 0.95) -> torch.Tensor:
    """X plus a mean and one direction holding ``share`` of the centred variance (the shape of a
    trained LM's residual stream: 95 % in one direction on issue 21's LM row)."""
    g = torch.Generator().manual_seed(3)
    u = torch.randn(X.shape[1], generator=g)
    t = torch.randn(len(X), generator=g) * ((X - X.mean(0)).pow(2).sum(-1).mean() * share / (1 - share)).sqrt()
    return X + 3 * u + t[:, None] * u / u.norm()


def test_the_default_rate_follows_the_datas_spread(planted):
    sets, _ = planted
    X = sets["norm_d"]
    assert spread_factor(X[:4096]) == 1.0  # planted worlds: participation ratio ≈ 0.7·d
    skewed = lm_like(X)
    s = spread_factor(skewed[:4096])
    assert 0.1 < s < 0.35 and spread_factor(skewed[:4096] * 1e-3) == pytest.approx(s)  # scale-free
    assert participation_ratio(torch.eye(8)) == pytest.approx(7)  # 8 points: 7 equal directions
    cfg = DictionaryConfig(kind="topk", d_in=D, n_latents=N_LATENTS, k=3)
    tcfg = TrainConfig(batch_size=BATCH, total_tokens=150_000, device="cpu")
    flat, skew = (Trainer(cfg, data, tcfg, progress=False).runs[0].base_lr for data in (X, skewed))
    assert flat == default_lr(N_LATENTS, BATCH, tcfg.steps)
    assert skew == pytest.approx(default_lr(N_LATENTS, BATCH, tcfg.steps, s), rel=0.03) and skew < flat / 2.5  # its own sample
    assert Trainer(cfg, skewed, tcfg.replace(lr=1e-3), progress=False).runs[0].base_lr == 1e-3  # given: kept


def test_auxk_reaches_dying_latents_within_a_few_steps_of_a_short_run():
    t = TrainConfig(batch_size=4096, total_tokens=1_000_000)
    assert t.dead_token_window() == 200_000  # kinds without k: a fifth of the run
    assert t.dead_token_window(4096, 32) == 12_288  # top-k kinds: 96 firings of an average latent,
    assert t.dead_token_window(512, 8) == 3 * 4096  # at least three batches,
    assert t.replace(total_tokens=10_000_000).dead_token_window(4096, 32) == 40_960  # or 1 % of the run, at most 320 firings
    assert t.replace(total_tokens=3_000_000).dead_token_window(4096, 32) == 30_000
    assert TrainConfig(total_tokens=10**9).dead_token_window(32768, 32) == 327_680  # a long run: 320 firings
    assert t.dead_token_window(512, 1) == 49_152 and TrainConfig(total_tokens=10_000).dead_token_window(512, 8) == 4096
    assert t.replace(dead_tokens=5).dead_token_window(512, 8) == 5
    cfg = DictionaryConfig(kind="topk", d_in=8, n_latents=64, k=2)
    assert cfg.aux_coef == 0.5 and DictionaryConfig(kind="topk", d_in=8, n_latents=64, k=2, aux_coef=0.1).aux_coef == 0.1
    assert DictionaryConfig(kind="topk", d_in=8, n_latents=64, k=2, n_sources=2).aux_coef == 1 / 32  # crosscoders
    trainer = Trainer(cfg, torch.randn(512, 8), TrainConfig(batch_size=64, total_tokens=1_000_000), progress=False)
    assert trainer.runs[0].tracker.window == 10_000  # 1 % of the run: more than 96 firings (3072), less than 320


def test_every_kind_is_normalised_by_default_and_lambda_is_per_kind():
    from saekit.config import DICTIONARY_KINDS

    assert all(TrainConfig().normalizes(k) for k in DICTIONARY_KINDS)
    assert not TrainConfig().normalizes("crosscoder") and TrainConfig(normalize=True).normalizes("crosscoder")
    assert not TrainConfig(normalize=False).normalizes("relu")
    assert DictionaryConfig(kind="relu", d_in=4, n_latents=8).sparsity_coef == 2.0
    assert DictionaryConfig(kind="gated", d_in=4, n_latents=8).sparsity_coef == 4.0
    assert DictionaryConfig(kind="relu", d_in=4, n_latents=8, n_sources=2).sparsity_coef == 5.0  # crosscoder
    assert DictionaryConfig(kind="relu", d_in=4, n_latents=8, sparsity_coef=0.3).sparsity_coef == 0.3


def test_annealed_lp_schedule_follows_the_run():
    lp = DictionaryConfig(kind="relu", d_in=4, n_latents=8, penalty="lp")
    run = lp.for_run(300)  # p starts to fall at a third of the run and reaches lp at its last step
    assert (run.lp_anneal_start, run.lp_anneal_steps) == (100, 199)
    assert (lp.for_run(30).lp_anneal_start, lp.for_run(30).lp_anneal_steps) == (10, 19)
    given = DictionaryConfig(kind="relu", d_in=4, n_latents=8, penalty="lp", lp_anneal_steps=50).for_run(300)
    assert (given.lp_anneal_start, given.lp_anneal_steps) == (0, 50)
    fixed = DictionaryConfig(kind="relu", d_in=4, n_latents=8, penalty="lp", lp_anneal_steps=0)
    assert fixed.for_run(300).lp_anneal_steps == 0  # a fixed p stays fixed
    l1 = DictionaryConfig(kind="relu", d_in=4, n_latents=8)
    assert l1.for_run(300) == l1.replace(W_dec_lr_scale=1.0) and (l1.lp_anneal_start, l1.lp_anneal_steps) == (0, 0)


def test_guard_warns_on_a_collapsed_run(planted, caplog):
    sets, _ = planted
    cfg = DictionaryConfig(kind="relu", d_in=D, n_latents=256, sparsity_coef=200.0)
    tcfg = TrainConfig(batch_size=512, total_tokens=40_000, seed=0, device="cpu", log_every=2)
    with caplog.at_level(logging.WARNING, logger="saekit.training"):
        _, records = fit(cfg, sets["norm_d"], tcfg)
    messages = [r.getMessage() for r in caplog.records]
    assert any("collapsed" in m and "sparsity_coef" in m for m in messages), messages
    assert records[-1]["l0"] < 0.5


def test_guard_warns_on_an_under_trained_run(caplog):
    X, _ = sparse_feature_data(n=30_000, d=D, n_features=512, mean_active=5.0, seed=0)  # a harder world
    sets = {"norm_d": X * (D / X.pow(2).sum(-1).mean()).sqrt()}
    # an encoder not tied to the decoder, no decay, 20 steps: the FVU is still dropping fast at
    # the end (1.13 -> 0.87 by step 17, ~1.5 % a step; a tied top-k run plateaus within 20 steps here)
    # (session 8's decoder rates: at today's 3x W_dec rate the same run plateaus within 20 steps)
    cfg = DictionaryConfig(kind="topk", d_in=D, n_latents=256, k=5, init_encoder_from_decoder=False, W_dec_lr_scale=1.0, b_dec_lr_scale=1.0)
    tcfg = TrainConfig(batch_size=512, total_tokens=512 * 20, lr=3e-3, lr_warmup_steps=0, lr_decay_fraction=0.0,
                       seed=0, device="cpu", log_every=1)
    with caplog.at_level(logging.WARNING, logger="saekit.training"):
        fit(cfg, sets["norm_d"], tcfg)
    messages = [r.getMessage() for r in caplog.records]
    assert any("under-trained" in m and "total_tokens" in m for m in messages), messages


def test_guard_reads_the_fall_where_the_rate_starts_to_decay():
    """A run flat until its rate decays at step 80, then 8 % lower over the decay (Adam's noise
    annealed away): the guard is silent given the decay's start, and warns on the same records
    without it; a run still falling steeply when the decay starts is under-trained either way."""
    flat = [{"step": s, "fvu": 0.2 if s <= 80 else 0.2 - 0.0008 * (s - 80), "l0": 5.0} for s in range(1, 101)]
    falling = [{"step": s, "fvu": 1.0 - 0.008 * min(s, 80) - 0.0008 * max(0, s - 80), "l0": 5.0} for s in range(1, 101)]
    assert quality_warnings(flat, decay_start=80) == []
    assert "under-trained" in quality_warnings(flat)[0]
    assert "under-trained" in quality_warnings(falling, decay_start=80)[0]


def test_guard_reads_each_dictionary_of_a_sweep():
    good = [{"dict": "a", "step": s, "fvu": 0.1, "l0": 5.0, "dead_fraction": 0.0} for s in range(1, 101)]
    falling = [{"dict": "b", "step": s, "fvu": 1.0 - 0.005 * s, "l0": 5.0, "dead_fraction": 0.0} for s in range(1, 101)]
    dead = [{"dict": "c", "step": s, "fvu": 0.1, "l0": 5.0, "dead_fraction": 0.95} for s in range(1, 101)]
    out = quality_warnings(good + falling + dead)
    assert len(out) == 2
    assert out[0].startswith("dictionary b:") and "under-trained" in out[0]
    assert out[1].startswith("dictionary c:") and "95% of the latents are dead" in out[1]
    assert quality_warnings(good) == [] and quality_warnings([]) == []


@pytest.mark.parametrize("steps, skewed, kind", [(2047, False, "topk"), (2048, False, "topk"), (2048, True, "topk"), (2048, False, "batchtopk")])
def test_a_crowded_dictionary_in_a_long_run_slows_down_and_steps_its_decoder_faster(steps, skewed, kind):
    """From LONG_RUN_STEPS on, a crowded top-k dictionary (here 256 latents, k 2, 8-d: crowding 2)
    trains at 0.75x the long-run rate with W_dec at 120x that on spread-out data, less on data held
    by fewer directions (in proportion to the spread above 0.5; an LM's residual stream, spread 0.19:
    none); the run's saved config carries the multiple it used. One step shorter, the short-run
    rule: its rate and 20x. batchtopk takes half of the long-run rule (session 14)."""
    torch.manual_seed(0)
    x = torch.randn(4096, 8)
    x = lm_like(x) if skewed else x
    cfg = DictionaryConfig(kind=kind, d_in=8, n_latents=256, k=2)
    assert cfg.crowding_ramp() == 1.0 and cfg.W_dec_lr_scale is None
    trainer = Trainer(cfg, x, TrainConfig(batch_size=16, total_tokens=16 * steps, device="cpu"), progress=False)
    run = trainer.runs[0]
    trainer.step(*trainer.next_batch())
    lr_of = {id(p): g["lr"] for g in run.optimizer.param_groups for p in g["params"]}
    spread = spread_factor(x[:4096])
    assert trainer.spread == pytest.approx(spread, rel=1e-4) and (spread < 0.8 if skewed else spread == 1.0)
    long_boost, gao = 2.0, 2e-4 * (16384 / 256) ** 0.5
    weight = round(min(1.0, max(0.0, (spread - 0.5) / 0.5)) * (0.5 if kind == "batchtopk" else 1.0), 2)
    want_lr = long_boost * gao * (1 - 0.25 * weight) if steps >= 2048 else default_lr(256, 16, steps, spread)
    want_w_dec = round(20 + 100 * weight, 2) if steps >= 2048 else 20.0
    assert run.base_lr == pytest.approx(want_lr)
    assert lr_of[id(run.sae.W_dec)] == pytest.approx(want_w_dec * lr_of[id(run.sae.W_enc)])
    assert run.sae.cfg.W_dec_lr_scale == want_w_dec


def test_a_checkpoint_of_other_rates_names_the_field_when_refused(tmp_path):
    """A long run's checkpoint carries the W_dec multiple it used; resuming it under another
    multiple (as after a change of default) is refused with the field and both values named, and
    setting the checkpoint's value resumes it."""
    torch.manual_seed(0)
    x = torch.randn(4096, 8)
    tcfg = TrainConfig(batch_size=16, total_tokens=16 * 2048, device="cpu", out_dir=str(tmp_path), checkpoint_every=2, log_every=0)
    cfg = DictionaryConfig(kind="topk", d_in=8, n_latents=256, k=2)
    trainer = Trainer(cfg, x, tcfg, progress=False)
    for _ in range(2):
        trainer.step(*trainer.next_batch())
    trainer.save_checkpoint()
    assert trainer.runs[0].sae.cfg.W_dec_lr_scale == 120.0
    with pytest.raises(ConfigError, match=r"W_dec_lr_scale 120\.0 vs 20\.0"):
        Trainer(cfg.replace(W_dec_lr_scale=20.0), x, tcfg, progress=False).resume()
    resumed = Trainer(cfg.replace(W_dec_lr_scale=120.0), x, tcfg, progress=False)
    assert resumed.runs[0].base_lr != trainer.runs[0].base_lr  # a given multiple: the long-run rule is off
    resumed.resume()  # ... but the run goes on at the rate it trained at
    assert resumed.step_count == 2 and resumed.runs[0].base_lr == trainer.runs[0].base_lr


def test_the_long_run_rule_applies_only_when_both_rates_are_defaults():
    """The long-run rule sets the base rate and W_dec's multiple together: a given ``lr`` keeps
    W_dec at the crowded 20x, a given ``W_dec_lr_scale`` keeps twice Gao's rate."""
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    cfg = DictionaryConfig(kind="topk", d_in=8, n_latents=256, k=2)
    tcfg = TrainConfig(batch_size=16, total_tokens=16 * 2048, device="cpu")
    gao = 2e-4 * (16384 / 256) ** 0.5
    rate_given = Trainer(cfg, x, tcfg.replace(lr=1e-3), progress=False).runs[0]
    assert rate_given.base_lr == 1e-3 and rate_given.sae.cfg.W_dec_lr_scale == 20.0
    w_dec_given = Trainer(cfg.replace(W_dec_lr_scale=50.0), x, tcfg, progress=False).runs[0]
    assert w_dec_given.base_lr == pytest.approx(2 * gao) and w_dec_given.sae.cfg.W_dec_lr_scale == 50.0
    both_default = Trainer(cfg, x, tcfg, progress=False).runs[0]
    assert both_default.base_lr == pytest.approx(1.5 * gao) and both_default.sae.cfg.W_dec_lr_scale == 120.0
