"""Verdicts in the comparison: model seeds grouped, axes per dictionary, one verdict record per
variant × dictionary × axis, convergence flagged, the verdict table and forest plot first in the report."""

import json

import pytest

from saekit.cli import main
from saekit.config import DictionaryConfig, TrainConfig
from saekit.models import load_model
from saekit.pipeline import run_comparison
from saekit.pipeline.editing import EditSettings
from saekit.pipeline.stats import NO_DIFFERENCE, WITHHELD
from saekit.pipeline.variants import group_names

RECORD = {"metric", "baseline", "variant", "random", "delta", "ci95", "normalised", "verdict", "n_models", "n_seeds"}


@pytest.fixture(scope="module")
def model_seeds(verdict_models):
    """Two model seeds of the baseline and of the random control (the session's shared tiny models)."""
    return [verdict_models[n] for n in ("baseline0", "baseline1", "random0", "random1")]


@pytest.fixture(scope="module")
def verdict_run(model_seeds, tmp_path_factory):
    out = tmp_path_factory.mktemp("verdicts")
    cfgs = {"sae": DictionaryConfig(kind="topk", d_in=32, n_latents=64, k=4, hook_name="blocks.0.hook_mlp_out")}
    tcfg = TrainConfig(batch_size=64, total_tokens=16_000, lr=3e-3, lr_warmup_steps=2, log_every=100)
    results = run_comparison(
        model_seeds, cfgs, out, seeds=(0, 1), train_tokens=16_000, tcfg=tcfg, n_eval_seqs=16, n_splice_seqs=4,
        n_explain_seqs=64, autointerp_latents=32, split_widths=False, synthetic=False, quiet=True,
        edit=EditSettings("words:love|loves|loved", max_texts=24, n_ctx=32, n_max=4, alphas=[0.0, 1.0, 2.0]),
    )  # fmt: skip
    return out, results


def test_model_seeds_of_one_variant_form_one_group(verdict_run):
    _, results = verdict_run
    assert results["groups"] == {"baseline": ["baseline-s0", "baseline-s1"], "random": ["random-s0", "random-s1"]}
    # cross-variant sections keep one model per group; every model has its own dictionaries and consistency
    assert set(results["matching"]["sae"]["noise_floor"]) == {"baseline-s0", "random-s0"}
    assert {r["variant"] for r in results["dictionaries"]} == {"baseline-s0", "baseline-s1", "random-s0", "random-s1"}
    assert set(results["model_axes"]) == {f"{m}/sae" for m in ("baseline-s0", "baseline-s1", "random-s0", "random-s1")}


def test_every_verdict_record_has_the_documented_fields(verdict_run):
    out, results = verdict_run
    on_disk = json.loads((out / "results.json").read_text())
    axes = on_disk["verdicts"]["random"]["sae"]
    assert set(axes) >= {"reconstruction", "ce_loss_recovered", "explainability", "abstractness", "consistency",
                         "neuron_alignment", "neuron_abstractness", "neuron_explainability", "lm_cost", "editability"}  # fmt: skip
    for axis, rec in axes.items():
        assert RECORD <= set(rec), axis
        assert rec["n_models"] == 2 and rec["verdict"] in ("better", "worse", NO_DIFFERENCE, WITHHELD), (axis, rec)
        lo, hi = rec["ci95"]
        assert lo <= rec["delta"] <= hi, (axis, rec)
        assert rec["delta"] == pytest.approx(rec["variant"] - rec["baseline"])
    # the lm_cost axis is the held-out LM loss difference of the two groups' models
    loss = on_disk["lm_loss"]
    expect = (loss["random-s0"] + loss["random-s1"] - loss["baseline-s0"] - loss["baseline-s1"]) / 2
    assert axes["lm_cost"]["delta"] == pytest.approx(expect)


def test_unconverged_config_is_flagged_and_gets_no_matching_verdict(verdict_run):
    out, results = verdict_run
    conv = results["convergence"]["sae"]
    rec = results["verdicts"]["random"]["sae"]["consistency"]
    assert (rec["verdict"] == WITHHELD) == (not conv["converged"])
    html = (out / "report.html").read_text()
    assert html.index("Verdicts") < html.index("Model variants")  # the answer comes first
    assert "forest plot" in html and ("not converged" in html) == (not conv["converged"])


def test_group_option_is_stored_and_overrides_the_variant(tmp_path):
    rc = main(["model", "train", "--variant", "baseline", "--group", "baseline_b", "--out", str(tmp_path / "b"),
               "--steps", "2", "--n-layers", "1", "--d-model", "32", "--n-heads", "2", "--d-mlp", "64",
               "--n-ctx", "16", "--batch-size", "2", "--device", "cpu"])  # fmt: skip
    assert rc == 0
    assert json.loads((tmp_path / "b" / "saekit_model.json").read_text())["group"] == "baseline_b"
    handle = load_model(tmp_path / "b")
    assert group_names([handle]) == ["baseline_b"]


def test_editability_axis_reaches_the_verdicts_and_the_report_shows_its_curves(verdict_run):
    """compare with a concept: every dictionary gets an editability value (its first seed's equals the
    selectivity AUC of the curves kept for the report), the verdict has an interval over 2 model × 2
    dictionary seeds, and the report shows the ablation and steering curves of each model."""
    import re

    from saekit.editing.editability import selectivity_auc

    out, results = verdict_run
    models = ["baseline-s0", "baseline-s1", "random-s0", "random-s1"]
    values = {(r["variant"], r["seed"]): r["axes"]["editability"] for r in results["dictionaries"]}
    assert set(values) == {(m, s) for m in models for s in (0, 1)}
    assert all(isinstance(v, float) and v == v for v in values.values())
    curves = results["editing"]["curves"]["sae"]
    assert set(curves) == set(models) and results["editing"]["measure"] == "selectivity_auc"
    for m in models:
        assert values[(m, 0)] == pytest.approx(selectivity_auc(curves[m]["ablation"]))
        assert curves[m]["ablation"]["n"] == [0, 1, 2, 4] and curves[m]["steering"]["alpha"] == [0.0, 1.0, 2.0]
    rec = results["verdicts"]["random"]["sae"]["editability"]
    assert rec["n_models"] == 2 and rec["n_seeds"] == 2 and rec["ci95"][0] <= rec["delta"] <= rec["ci95"][1]
    base = sum(values[(m, s)] for m in models[:2] for s in (0, 1)) / 4
    assert rec["baseline"] == pytest.approx(base)
    html = (out / "report.html").read_text()
    section = html.split("<h2>Editability: removing and steering words:love|loves|loved</h2>", 1)[1].split("<h2>", 1)[0]
    assert len(re.findall(r'<img alt="(?:ablation|steering) curves of sae" src="data:image/png;base64,', section)) == 2
    assert all(m in section for m in models)
    assert "editability" in html.split("<h2>Verdicts", 1)[1].split("<h2>", 1)[0]


MEASURES = ("units_to_half", "selectivity_auc", "steering_efficiency")


def test_all_three_editability_measures_per_variant_with_intervals_in_json_and_html(verdict_run):
    """One compare --concept run measures units to half, selectivity AUC and steering efficiency for every
    dictionary (the first seed's values follow from the curves kept for the report) and every model's MLP
    neurons; each is a verdict axis with an interval and the direction of its measure, in one Holm family
    (the headline ``editability`` counted once); the verdict table and the editability section show all three."""
    import html as html_lib
    import math

    from saekit.editing.editability import selectivity_auc, steering_efficiency, units_to_half
    from saekit.pipeline.stats import DEFAULT_HIGHER_IS_BETTER
    from saekit.pipeline.verdicts import verdicts_from_results

    out, _ = verdict_run
    results = json.loads((out / "results.json").read_text())
    curves = results["editing"]["curves"]["sae"]
    for r in results["dictionaries"]:
        a = r["axes"]
        assert all(isinstance(a[f"editability_{m}"], float) for m in MEASURES)
        assert a["editability"] == a["editability_selectivity_auc"]  # the headline (EditSettings' default)
        if r["seed"] == 0:
            c = curves[r["variant"]]
            half = units_to_half(c["ablation"])
            assert a["editability_units_to_half_reached"] == (not math.isnan(half))
            assert a["editability_units_to_half"] == (half if half == half else c["ablation"]["n"][-1] + 1)
            assert a["editability_selectivity_auc"] == pytest.approx(selectivity_auc(c["ablation"]))
            assert a["editability_steering_efficiency"] == pytest.approx(steering_efficiency(c["steering"]))
    neurons = results["editing"]["neuron_curves"]["sae"]
    assert {c["hook"] for c in neurons.values()} == {"blocks.0.mlp.hook_post"}
    rec = results["verdicts"]["random"]["sae"]
    tested = [a for a, r in rec.items() if r.get("p_holm") is not None and a != "editability"]
    for prefix, n_seeds in (("editability_", 2), ("neuron_editability_", None)):
        for m in MEASURES:
            r = rec[prefix + m]
            assert r["n_models"] == 2 and r["n_seeds"] == n_seeds and r["n_tests"] == len(tested), (m, r)
            assert r["ci95"][0] <= r["delta"] <= r["ci95"][1] and r["delta"] == pytest.approx(r["variant"] - r["baseline"])
            assert DEFAULT_HIGHER_IS_BETTER[prefix + m] == (m != "units_to_half")
            if r["verdict"] in ("better", "worse"):
                assert (r["verdict"] == "better") == ((r["delta"] > 0) == (m != "units_to_half"))
    base = results["groups"]["baseline"]
    per_model = [results["model_axes"][f"{m}/sae"]["neuron_editability_steering_efficiency"] for m in base]
    assert rec["neuron_editability_steering_efficiency"]["baseline"] == pytest.approx(sum(per_model) / 2)
    assert rec["editability"]["delta"] == rec["editability_selectivity_auc"]["delta"]
    cv, cb = (sum(not r["axes"]["editability_units_to_half_reached"] for r in results["dictionaries"]
                  if r["variant"] in results["groups"][g]) for g in ("random", "baseline"))  # fmt: skip
    said = f"not removed within the n tried in {cv} of 4 dictionaries of random and {cb} of 4 of baseline"
    assert (said in rec["editability_units_to_half"]["note"]) == bool(cv or cb)
    assert verdicts_from_results(results)["verdicts"]["random"]["sae"]["editability_units_to_half"]["ci95"] == pytest.approx(
        rec["editability_units_to_half"]["ci95"]
    )  # recomputed from results.json: the same test
    page = html_lib.unescape((out / "report.html").read_text())
    table = page.split("<h2>Verdicts", 1)[1].split("<h2>", 1)[0]
    section = page.split("<h2>Editability", 1)[1].split("<h2>", 1)[0]
    for prefix in ("editability_", "neuron_editability_"):
        for m in MEASURES:
            r = rec[prefix + m]
            assert f'<th class="">{prefix}{m}</th>' in table
            cell = f"Δ {r['delta']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
            assert f"{r['verdict']}: {cell}" in table and f"{r['variant']:.3f} vs {r['baseline']:.3f}: {cell}" in section
    assert '<th class="">editability</th>' not in table  # the headline is one of the three columns
    assert f"{cv}/4 vs {cb}/4" in section  # censored units_to_half of the latents, random vs baseline
    for label in ("units to half (↓)", "selectivity AUC (↑, nats)", "steering efficiency (↑, nats)"):
        assert section.count(f"<th>{label}</th>") == 4  # latents and neurons: per variant, per model
