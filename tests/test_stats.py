"""Statistics of a comparison: hierarchical bootstrap, Holm, verdicts, on data with known truth."""

import numpy as np
import pytest

from saekit.errors import ConfigError
from saekit.pipeline.stats import (
    NO_DIFFERENCE,
    NOT_ENOUGH_SEEDS,
    _leaf_replicates,
    bootstrap_delta,
    group_estimate,
    hierarchical_bootstrap,
    holm,
    verdicts_for,
)


def _group(rng, mu, n_models, n_seeds=3, n_latents=0, sd_model=1.0, sd_seed=0.3, sd_latent=1.0):
    """{model: {seed: value}}: a model effect, dictionary-seed noise and (n_latents > 0) per-latent spread."""
    out = {}
    for m in range(n_models):
        model_mean = mu + sd_model * rng.standard_normal()
        out[m] = {}
        for s in range(n_seeds):
            v = model_mean + sd_seed * rng.standard_normal()
            out[m][s] = v + sd_latent * rng.standard_normal(n_latents) if n_latents else v
    return out


def test_estimate_is_mean_over_models_of_mean_over_seeds_of_latent_median():
    values = {0: {0: [1.0, 2.0, 9.0], 1: [3.0, np.nan, 4.0, 5.0]}, 1: {0: [0.0, 0.0, 1.0]}}
    # model 0: mean(median[1,2,9]=2, median[3,4,5]=4) = 3; model 1: 0; group: 1.5 (NaN = dead latent, left out)
    assert group_estimate(values) == pytest.approx(1.5)
    assert group_estimate({0: 2.0, 1: 4.0}) == pytest.approx(3.0)


def test_bootstrap_resamples_models_then_seeds():
    # one model: only the seed level varies; the replicate variance is that of a mean of 3 resampled seeds
    seeds = {0: 0.0, 1: 1.0, 2: 5.0}
    reps = hierarchical_bootstrap({0: seeds}, n_boot=20000, seed=1)
    assert reps.var() == pytest.approx(np.var([0.0, 1.0, 5.0]) / 3, rel=0.05)
    # identical seeds, different models: only the model level varies (M=2 drawn with replacement)
    reps = hierarchical_bootstrap({0: {0: 1.0, 1: 1.0}, 1: {0: 3.0, 1: 3.0}}, n_boot=20000, seed=1)
    assert set(np.unique(reps)) == {1.0, 2.0, 3.0}
    assert np.mean(reps == 2.0) == pytest.approx(0.5, abs=0.02)
    # a per-latent axis resamples latents: one dictionary still gives a spread of medians
    reps = hierarchical_bootstrap({0: {0: np.arange(101.0)}}, n_boot=4000, seed=0)
    assert reps.std() > 2 and abs(np.median(reps) - 50) < 3
    np.testing.assert_array_equal(reps, hierarchical_bootstrap({0: {0: np.arange(101.0)}}, n_boot=4000, seed=0))


@pytest.mark.parametrize("n_latents", [2, 10, 11])
def test_median_of_resampled_latents_matches_brute_force(n_latents):
    """The order-statistic draw of a resample's median has the distribution of drawing the resample."""
    rng = np.random.default_rng(n_latents)
    x = np.sort(rng.standard_normal(n_latents) ** 3)
    exact = _leaf_replicates(x, 100_000, rng, per_latent=True)
    brute = np.median(x[rng.integers(0, n_latents, size=(100_000, n_latents))], axis=1)
    values = np.union1d(exact, brute)  # both are discrete: compare the probability of every value
    freq = lambda r: (r[:, None] == values[None, :]).mean(axis=0)
    assert np.abs(freq(exact) - freq(brute)).max() < 0.01
    assert exact.std() == pytest.approx(brute.std(), rel=0.03)
    assert np.isin(exact, (x[:, None] + x[None, :]) / 2).all()  # always a (mean of two) data value(s)


@pytest.mark.parametrize("n_latents, reps, n_boot", [(0, 300, 300), (33, 100, 200)])
def test_interval_covers_the_true_difference(n_latents, reps, n_boot):
    """95 % interval of variant - baseline (true difference 1.0) with 3 model seeds per group."""
    rng = np.random.default_rng(0)
    covered = 0
    for r in range(reps):
        a, b = _group(rng, 1.0, 3, n_latents=n_latents), _group(rng, 0.0, 3, n_latents=n_latents)
        lo, hi = bootstrap_delta(a, b, n_boot=n_boot, seed=r)["ci"]
        covered += lo <= 1.0 <= hi
    assert 0.90 <= covered / reps <= 0.99, covered / reps


def test_percentile_interval_is_overconfident_with_two_model_seeds():
    """Why the default interval is t-calibrated: with 2 model seeds the percentile one finds phantom effects."""
    rng = np.random.default_rng(1)
    false = {"percentile": 0, "t": 0}
    reps = 200
    for r in range(reps):
        a, b = _group(rng, 0.0, 2), _group(rng, 0.0, 2)
        for method in false:
            false[method] += bootstrap_delta(a, b, n_boot=300, seed=r, method=method)["p"] < 0.05
    assert false["percentile"] / reps > 0.15
    assert false["t"] / reps <= 0.06


def test_holm_hand_example():
    # sorted: d .005 (x4 = .02), a .01 (x3 = .03), c .03 (x2 = .06), b .04 (x1 = .04 -> kept monotone: .06)
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert list(adjusted) == ["a", "b", "c", "d"]
    assert holm({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        holm({"x": 1.5})


def _axes(rng, shift, n_models, n_seeds=3):
    """One group's values on four axes of the three shapes: per dictionary, per latent, per model."""
    return {
        "reconstruction": _group(rng, 0.3 + shift["reconstruction"], n_models, n_seeds, sd_model=0.02, sd_seed=0.01),
        "abstractness": _group(rng, 0.5 + shift["abstractness"], n_models, n_seeds, 41, 0.02, 0.01, 0.2),
        "lm_cost": {m: 3.0 + shift["lm_cost"] + 0.02 * rng.standard_normal() for m in range(n_models)},
        "consistency": {m: 0.4 + shift["consistency"] + 0.02 * rng.standard_normal() for m in range(n_models)},
    }


NO_SHIFT = {"reconstruction": 0.0, "abstractness": 0.0, "lm_cost": 0.0, "consistency": 0.0}


def test_null_two_groups_of_one_distribution_give_no_difference():
    """Two groups of baseline models (2 model seeds each, the demo's setting): no verdict on >= 90 %."""
    rng = np.random.default_rng(2)
    counts = {"total": 0, NO_DIFFERENCE: 0}
    for r in range(40):
        groups = {"baseline": _axes(rng, NO_SHIFT, 2), "baseline_b": _axes(rng, NO_SHIFT, 2)}
        for entry in verdicts_for(groups, n_boot=200, seed=r)["baseline_b"].values():
            counts["total"] += 1
            counts[NO_DIFFERENCE] += entry["verdict"] == NO_DIFFERENCE
    assert counts["total"] == 160
    assert counts[NO_DIFFERENCE] / counts["total"] >= 0.9, counts


def test_clear_differences_get_the_right_sign_per_axis():
    rng = np.random.default_rng(3)
    up = {"reconstruction": 0.2, "abstractness": 0.3, "lm_cost": 0.5, "consistency": 0.3}
    down = {k: -v for k, v in up.items()}
    groups = {"baseline": _axes(rng, NO_SHIFT, 3), "up": _axes(rng, up, 3), "down": _axes(rng, down, 3)}
    v = verdicts_for(groups, n_boot=500)
    # higher FVU and higher LM cost are worse; higher abstractness and consistency are better
    assert {a: e["verdict"] for a, e in v["up"].items()} == {
        "reconstruction": "worse", "abstractness": "better", "lm_cost": "worse", "consistency": "better"}  # fmt: skip
    assert {a: e["verdict"] for a, e in v["down"].items()} == {
        "reconstruction": "better", "abstractness": "worse", "lm_cost": "better", "consistency": "worse"}  # fmt: skip
    e = v["up"]["abstractness"]
    assert e["delta"] == pytest.approx(e["variant"] - e["baseline"]) and 0.2 < e["delta"] < 0.4
    assert e["ci95"][0] < e["delta"] < e["ci95"][1] and e["ci95"][0] > 0
    assert e["n_models"] == 3 and e["n_seeds"] == 3 and e["n_tests"] == 8 and e["p_holm"] >= e["p"]
    assert v["up"]["lm_cost"]["n_seeds"] is None  # one value per model
    assert e["normalised"] is None and "No random control group" in e["note"]


def test_normalised_effect_against_the_random_control():
    rng = np.random.default_rng(4)
    groups = {
        "baseline": _axes(rng, NO_SHIFT, 3),
        "act_l1": _axes(rng, {**NO_SHIFT, "abstractness": 0.1}, 3),
        "random": _axes(rng, {**NO_SHIFT, "abstractness": -0.4}, 3),
    }
    v = verdicts_for(groups, n_boot=200)
    e = v["act_l1"]["abstractness"]
    assert e["normalised"] == pytest.approx((e["variant"] - e["random"]) / (e["baseline"] - e["random"]))
    assert 1.1 < e["normalised"] < 1.4 and e["note"] == ""
    assert v["random"]["abstractness"]["normalised"] == pytest.approx(0.0)
    assert v["random"]["abstractness"]["verdict"] == "worse"


def test_one_model_seed_gives_a_sentence_and_the_run_goes_on():
    rng = np.random.default_rng(5)
    groups = {
        "baseline": _axes(rng, NO_SHIFT, 2),
        "pruned": _axes(rng, NO_SHIFT, 1),
        "act_l1": _axes(rng, {**NO_SHIFT, "abstractness": 0.5}, 2),
    }
    v = verdicts_for(groups, n_boot=200)
    e = v["pruned"]["abstractness"]
    assert e["verdict"] == NOT_ENOUGH_SEEDS and e["ci95"] is None and e["p_holm"] is None
    assert "pruned has 1 model seed(s)" in e["note"] and "at least 2 model seeds per group" in e["note"]
    assert e["delta"] == pytest.approx(e["variant"] - e["baseline"])  # point estimates are still given
    assert v["act_l1"]["abstractness"]["verdict"] == "better"
    assert v["act_l1"]["abstractness"]["n_tests"] == 4  # pruned's axes are not in the Holm family


def test_withheld_and_missing_axes_and_bad_input():
    rng = np.random.default_rng(6)
    groups = {"baseline": _axes(rng, NO_SHIFT, 2), "act_l1": _axes(rng, {**NO_SHIFT, "consistency": 0.5}, 2)}
    del groups["act_l1"]["lm_cost"]
    v = verdicts_for(groups, n_boot=200, withhold={"consistency": "Dictionaries of one model disagree."})
    assert v["act_l1"]["consistency"]["verdict"] == "withheld" and v["act_l1"]["consistency"]["ci95"] is not None
    assert "disagree" in v["act_l1"]["consistency"]["note"]
    assert v["act_l1"]["lm_cost"]["verdict"] == "not measured" and "act_l1 has no values for lm_cost" in v["act_l1"]["lm_cost"]["note"]
    assert v["act_l1"]["abstractness"]["n_tests"] == 2
    with pytest.raises(ConfigError, match="baseline group named 'baseline'"):
        verdicts_for({"act_l1": groups["act_l1"]})
    with pytest.raises(ConfigError, match="higher_is_better"):
        verdicts_for({"baseline": {"novel": {0: 1.0, 1: 2.0}}, "x": {"novel": {0: 1.0, 1: 2.0}}})
