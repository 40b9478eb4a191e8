"""The editability verdict axes of a comparison from known values (no model): each of the three measures is
its own test with the right direction (fewer units to half is better), the headline ``editability`` is the
same record counted once in the Holm family, and censored units_to_half values are counted in a note."""

from __future__ import annotations

import numpy as np
import pytest

from saekit.pipeline.verdicts import run_verdicts

GROUPS = {"baseline": ["b0", "b1", "b2"], "act": ["a0", "a1", "a2"]}


def _axes(rng, half: float, reached: bool, sel: float, steer: float, prefix: str = "editability_") -> dict:
    return {
        f"{prefix}units_to_half": half,
        f"{prefix}units_to_half_reached": reached,
        f"{prefix}selectivity_auc": sel + rng.normal(0, 0.01),
        f"{prefix}steering_efficiency": steer + rng.normal(0, 0.01),
    }


@pytest.fixture(scope="module")
def verdicts():
    """act: half the concept goes with 1-2 latents (baseline: never within n_max = 8, so 9; one baseline
    dictionary at 8), higher selectivity, lower steering efficiency; its neurons likewise."""
    rng = np.random.default_rng(0)
    dict_axes, model_axes = {}, {}
    for g, models in GROUPS.items():
        for i, m in enumerate(models):
            for s in range(3):
                if g == "act":
                    a = _axes(rng, float(1 + (i + s) % 2), True, 1.0, 0.1)
                else:
                    a = _axes(rng, 8.0 if (i, s) == (0, 0) else 9.0, (i, s) == (0, 0), 0.2, 0.6)
                dict_axes[(m, "sae", s)] = {**a, "editability": a["editability_units_to_half"]}
            n = (2.0 + i % 2, True, 0.9, 0.2) if g == "act" else (9.0, False, 0.1, 0.5)
            model_axes[(m, "sae")] = _axes(rng, *n, prefix="neuron_editability_")
    return run_verdicts(GROUPS, dict_axes, model_axes, {}, {}, seed=0, edit_measure="units_to_half")["verdicts"]


def test_each_measure_is_its_own_axis_with_its_direction(verdicts):
    rec = verdicts["act"]["sae"]
    for prefix in ("editability_", "neuron_editability_"):
        half, sel, steer = (rec[prefix + m] for m in ("units_to_half", "selectivity_auc", "steering_efficiency"))
        assert half["delta"] < 0 and half["verdict"] == "better"  # fewer units: more editable
        assert sel["delta"] > 0 and sel["verdict"] == "better"
        assert steer["delta"] < 0 and steer["verdict"] == "worse"
        for r in (half, sel, steer):
            assert r["ci95"][0] <= r["delta"] <= r["ci95"][1] and r["n_models"] == 3
    assert rec["editability_units_to_half"]["n_seeds"] == 3 and rec["neuron_editability_units_to_half"]["n_seeds"] is None
    assert rec["editability_units_to_half"]["baseline"] == pytest.approx((8 + 9 * 8) / 9)


def test_headline_is_the_same_test_counted_once(verdicts):
    rec = verdicts["act"]["sae"]
    head, half = rec["editability"], rec["editability_units_to_half"]
    for k in ("delta", "ci95", "p", "p_holm", "verdict", "baseline", "variant"):
        assert head[k] == half[k], k
    assert head["note"].startswith("The headline editability measure (units_to_half)")
    assert half["n_tests"] == 6  # 3 latent + 3 neuron axes; the headline is not a seventh test


def test_censored_units_to_half_are_counted_in_the_note(verdicts):
    rec = verdicts["act"]["sae"]
    assert "in 0 of 9 dictionaries of act and 8 of 9 of baseline" in rec["editability_units_to_half"]["note"]
    assert "largest n tried + 1 (9)" in rec["editability_units_to_half"]["note"]
    assert "in 0 of 3 models of act and 3 of 3 of baseline" in rec["neuron_editability_units_to_half"]["note"]
    assert "largest n tried" not in rec["editability_selectivity_auc"]["note"]
