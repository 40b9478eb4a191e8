"""Ground truth: every architecture recovers known sparse feature directions.

64-d activations built from 256 unit-norm features, ~3 active per token with Zipf-like firing
(see tests/synthetic.py), 150k training tokens at the default learning rate on CPU; the kinds of
issue 18 on a smaller world (32-d, 128 features, 60k tokens).

The bars are per kind, a little under what each reached when measured (2026-12-01, session 6's
default learning rate; docs/dictionaries.md "Recovery of planted features"), and far above an
untrained decoder (MMCS 0.37 here, 0.49 on the small world). Until session 5 these tests passed before
any training: the dictionary's initial decoder drew the same random numbers as the planted features
(same seed, same generator); initialisation now draws from a salted generator
(test_an_untrained_dictionary_does_not_start_on_the_planted_features). At these settings and
budgets top-k, relu (λ 1), JumpReLU (tanh and quadratic losses here, the step loss in
tests/test_jumprelu_defaults.py), AbsTopK, Gated and annealed Lp (at their defaults) reach the 0.95 of
issue 18; batch top-k and Matryoshka do not at these budgets (tests/test_defaults.py: every kind at its
defaults, where they do with more tokens).
"""

import pytest
import torch
from synthetic import feature_recovery, sparse_feature_data

from saekit import DictionaryConfig, TrainConfig, train

SETTINGS = {
    "topk": {"k": 3},
    "batchtopk": {"k": 3},
    "relu": {"penalty": "l1", "sparsity_coef": 1.0, "sparsity_warmup_steps": 150},
    # Anthropic's tanh loss at saekit's defaults (λ 5, c 4, normalised inputs) with a λ warm-up; the step L0 at its
    # defaults: tests/test_jumprelu_defaults.py (same world), quadratic target-L0: below
    "jumprelu_tanh": {"kind": "jumprelu", "jumprelu_sparsity_loss": "tanh", "sparsity_warmup_steps": 100},
}
# (MMCS, fraction matched at cos > 0.9) at session 6's default lr (7.9e-3 here; the √ rule's 3.0e-3
# gave 0.971/0.95, 0.770/0.43, 0.906/0.71): measured 0.988/0.97, 0.873/0.69, 0.994/0.99; jumprelu_tanh
# (λ warm-up 100 steps: without it 0.752 at this rate) 0.986/0.97
BARS = {"topk": (0.95, 0.90), "batchtopk": (0.84, 0.60), "relu": (0.95, 0.90), "jumprelu_tanh": (0.95, 0.90)}


@pytest.fixture(scope="module")
def data():
    return sparse_feature_data(n=30_000, d=64, n_features=256, mean_active=3.0, seed=0)


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_recovers_ground_truth_features(kind, data):
    X, features = data
    settings = {"kind": kind, **SETTINGS[kind]}
    cfg = DictionaryConfig(d_in=64, n_latents=512, **settings)
    # relu's λ above was tuned on the raw scale (E||x||² ≈ 3): keep it un-normalised here
    # (tests/test_defaults.py covers the defaults); jumprelu at its defaults (normalised)
    normalize = None if settings["kind"] == "jumprelu" else False
    tcfg = TrainConfig(batch_size=512, total_tokens=150_000, seed=0, device="cpu", normalize=normalize)
    sae = train(cfg, X, tcfg, progress=False)
    mmcs, matched = feature_recovery(features, sae.W_dec.detach())
    assert mmcs >= BARS[kind][0], f"{kind}: MMCS {mmcs:.3f}"
    assert matched >= BARS[kind][1], f"{kind}: matched {matched:.3f}"
    with torch.no_grad():
        x = X[:4000]
        fvu = float((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        l0 = float((sae.encode(x) != 0).sum(-1).float().mean())
    assert fvu < 0.4 and l0 < 20  # reconstructs, and is sparse (true L0 ≈ 3)


# The kinds and losses of issue 18 on a smaller world (32-d, 128 features, ~3 active per token,
# 60k tokens) so each trains in seconds. JumpReLU's losses are on the flat world above.
SMALL_SETTINGS = {
    "matryoshka": {"kind": "matryoshka", "k": 3},
    "abstopk": {"kind": "abstopk", "k": 3},
    "gated": {"kind": "gated"},  # at its defaults (λ 4, normalised, no λ warm-up)
    # at its defaults (λ 2 normalised; p 1 -> 0.5 from a third of the run to its end); the flat world: tests/test_defaults.py
    "relu_lp_annealed": {"kind": "relu", "penalty": "lp"},
}


@pytest.fixture(scope="module")
def small_data():
    return sparse_feature_data(n=20_000, d=32, n_features=128, mean_active=3.0, seed=0)


# measured at session 6's default lr (the 1e-2 cap here): 0.763/0.33 (matryoshka; 0.816/0.52 with session 7's
# inner-prefix weight 0.15), 0.970/0.92 (up to sign),
# 0.916/0.74 (gated: normalised, default λ 4), 0.875/0.61 (the √ rule's 4.7e-3 gave 0.705/0.18,
# 0.887/0.62, 0.877/0.55 at λ 5, 0.802/0.37)
# gated at its session-7 defaults (aux term reaching the decoder, encoder at 0.3× init): 0.969/0.93 (0.883/0.64
# before, 0.916/0.74 with a λ warm-up of 60 steps); annealed Lp at its session-7 defaults: 0.953/0.87 (L0 6.7; it was 0.875/0.61 with the schedule fixed in steps, λ 1)
SMALL_BARS = {"matryoshka": (0.79, 0.45), "abstopk": (0.95, 0.88), "gated": (0.95, 0.88), "relu_lp_annealed": (0.93, 0.80)}


def recovery_up_to_sign(features: torch.Tensor, W_dec: torch.Tensor) -> tuple[float, float]:
    """feature_recovery with |cos|: a signed (AbsTopK) latent may hold a feature as its negative."""
    W = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (features @ W.T).abs().max(1).values
    return float(best.mean()), float((best > 0.9).float().mean())


@pytest.mark.parametrize("name", list(SMALL_SETTINGS))
def test_new_kinds_recover_ground_truth_features(name, small_data):
    X, features = small_data
    cfg = DictionaryConfig(d_in=32, n_latents=256, **SMALL_SETTINGS[name])
    # gated at saekit's defaults (λ 4.0 for inputs normalised to E||x||² = d_in, which its kind gets
    # by default); the others at the raw scale their settings were set for; the default learning rate
    normalize = None if name in ("gated", "relu_lp_annealed") else False
    tcfg = TrainConfig(batch_size=256, total_tokens=60_000, seed=0, device="cpu", normalize=normalize)
    sae = train(cfg, X, tcfg, progress=False)
    recovery = recovery_up_to_sign if name == "abstopk" else feature_recovery
    mmcs, matched = recovery(features, sae.W_dec.detach())
    assert mmcs >= SMALL_BARS[name][0], f"{name}: MMCS {mmcs:.3f}"
    assert matched >= SMALL_BARS[name][1], f"{name}: matched {matched:.3f}"
    with torch.no_grad():
        x = X[:4000]
        fvu = float((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        l0 = float((sae.encode(x) != 0).sum(-1).float().mean())
    assert fvu < 0.4 and l0 < 20  # reconstructs, and is sparse (true L0 ≈ 3)
    if name == "relu_lp_annealed":
        assert sae.current_p == 0.5 and int(sae.lp_stage) == cfg.lp_anneal_updates  # annealed to the target


def test_jumprelu_quadratic_lands_near_its_target_l0_and_recovers_the_features(data):
    """The quadratic target-L0 loss at saekit's defaults (normalised inputs, λ 5, ε 0.2, θ₀ 0.25,
    θ at 3× lr, encoder at 0.3×): L0 2.71 for a target of 3 (10 % off), MMCS 0.985. Measured
    besides (docs/dictionaries.md): target 2 -> L0 2.64 (32 % off), target 6 -> 3.14: it lands
    near the data's own L0 (about 3) at λ 5; a larger λ holds targets far from it
    (test_jumprelu_defaults.py)."""
    X, features = data
    cfg = DictionaryConfig(kind="jumprelu", d_in=64, n_latents=512, jumprelu_sparsity_loss="quadratic", target_l0=3.0)
    sae = train(cfg, X, TrainConfig(batch_size=512, total_tokens=150_000, seed=0, device="cpu"), progress=False)
    with torch.no_grad():
        l0 = float((sae.encode(X[:4000]) != 0).sum(-1).float().mean())
    assert abs(l0 - 3.0) <= 0.3 * 3.0, f"L0 {l0:.2f}, target 3"
    mmcs, matched = feature_recovery(features, sae.W_dec.detach())
    assert mmcs >= 0.95 and matched >= 0.93, f"MMCS {mmcs:.3f}, matched {matched:.2f}"


def test_an_untrained_dictionary_does_not_start_on_the_planted_features(data):
    """The recovery bars above mean something only if training finds the features: a dictionary
    initialised with the data's own seed must not start on them (init draws from a salted generator)."""
    from saekit.dictionaries import create

    _, features = data
    sae = create(DictionaryConfig(kind="topk", d_in=64, n_latents=1024, k=5), seed=0)
    mmcs, matched = feature_recovery(features, sae.W_dec.detach())
    assert mmcs < 0.6 and matched == 0.0, (mmcs, matched)
