"""Verdicts against their controls on a real run of tiny models: two groups of baseline model seeds
(the null) get no verdict, a missing control or a one-model group is said, and the LM cost is one test
per variant. (The random control is in tests/test_verdict_random_control.py, on models that generalise:
these memorise their 160 training sequences; see docs/comparing.md, "Checking the verdicts".)"""

import json
import re
import shutil
from pathlib import Path

import pytest

from saekit.config import DictionaryConfig, TrainConfig
from saekit.pipeline import run_comparison
from saekit.pipeline.stats import NO_DIFFERENCE, NOT_ENOUGH_SEEDS
from saekit.pipeline.verdicts import verdicts_from_results
from saekit.report import write_report

BASELINES = ["baseline-s0", "baseline-s1", "baseline_b-s2", "baseline_b-s3"]


@pytest.fixture(scope="module")
def control_run(verdict_models, tmp_path_factory):
    """One comparison of the groups baseline (seeds 0, 1), baseline_b (2, 3, `--group`) and random (0, 1),
    two dictionary configs so that lm_cost could be counted twice."""
    out = tmp_path_factory.mktemp("control_run")
    cfgs = {
        "sae": DictionaryConfig(kind="topk", d_in=32, n_latents=64, k=4, hook_name="blocks.0.hook_mlp_out"),
        "sae_narrow": DictionaryConfig(kind="topk", d_in=32, n_latents=32, k=4, hook_name="blocks.0.hook_mlp_out"),
    }
    tcfg = TrainConfig(batch_size=64, total_tokens=16_000, lr=3e-3, lr_warmup_steps=2, log_every=100)
    run_comparison(
        list(verdict_models.values()), cfgs, out, seeds=(0, 1), train_tokens=16_000, tcfg=tcfg, n_eval_seqs=N_EVAL,
        n_splice_seqs=4, n_explain_seqs=64, autointerp_latents=32, split_widths=False, synthetic=False, quiet=True,
    )  # fmt: skip
    return out, json.loads((out / "results.json").read_text())


N_EVAL = 16


def test_the_groups_of_the_run(control_run):
    _, results = control_run
    assert results["groups"] == {
        "baseline": BASELINES[:2],
        "baseline_b": BASELINES[2:],
        "random": ["random-s0", "random-s1"],
    }


def test_two_groups_of_baseline_seeds_get_no_verdict_on_at_least_90_percent(control_run):
    """Null: every split of the four baseline model seeds into two groups of two, each with 5 bootstrap
    seeds, computed from the run's stored per-dictionary values (the run itself is the first split)."""
    _, results = control_run
    verdicts = [results["verdicts"]["baseline_b"]]
    for a, b in ((0, 1), (0, 2), (0, 3)):
        first = [BASELINES[a], BASELINES[b]]
        groups = {"baseline": first, "other": [m for m in BASELINES if m not in first]}
        for seed in range(5):
            verdicts.append(verdicts_from_results(results, groups, seed=seed)["verdicts"]["other"])
    # every test of the Holm family whose interval has a width (an axis where all models score the same,
    # e.g. abstractness clipped at 1 on these tiny models, says nothing); lm_cost counted once per split
    tested = [
        rec["verdict"]
        for v in verdicts
        for d, per_axis in v.items()
        for axis, rec in per_axis.items()
        if rec["n_tests"] is not None and rec["ci95"][1] > rec["ci95"][0] and (axis != "lm_cost" or d == "sae")
    ]
    assert len(tested) >= 100
    share = sum(c == NO_DIFFERENCE for c in tested) / len(tested)
    assert share >= 0.9, (share, sorted(set(tested)))


def test_lm_cost_is_one_test_per_variant(control_run):
    _, results = control_run
    recs = results["verdicts"]["random"]
    assert recs["sae"]["lm_cost"] == recs["sae_narrow"]["lm_cost"]
    # the family: per variant, every tested (dictionary, axis) once, lm_cost once
    tested = {
        (v, d if axis != "lm_cost" else "*", axis)
        for v, per_dict in results["verdicts"].items()
        for d, per_axis in per_dict.items()
        for axis, rec in per_axis.items()
        if rec["n_tests"] is not None
    }
    assert recs["sae"]["lm_cost"]["n_tests"] == len(tested)


def test_without_the_random_control_normalised_is_null_and_said(control_run):
    _, results = control_run
    out = verdicts_from_results(results, {"baseline": BASELINES[:2], "baseline_b": BASELINES[2:]})
    for per_axis in out["verdicts"]["baseline_b"].values():
        for axis, rec in per_axis.items():
            assert rec["normalised"] is None and rec["random"] is None, axis
            assert "No random control group" in rec["note"], axis
    # with the control, the same entries have a normalised effect
    assert results["verdicts"]["baseline_b"]["sae"]["reconstruction"]["normalised"] is not None


def test_one_model_per_group_is_said_and_the_others_go_on(control_run, tmp_path):
    _, results = control_run
    groups = {"baseline": BASELINES[:2], "baseline_b": BASELINES[2:], "random": ["random-s0"]}
    out = verdicts_from_results(results, groups)["verdicts"]
    for axis, rec in out["random"]["sae"].items():
        assert rec["verdict"] == NOT_ENOUGH_SEEDS and rec["ci95"] is None, axis
        assert "random has 1 model seed(s)" in rec["note"] and "at least 2 model seeds" in rec["note"], axis
        assert rec["delta"] is not None
    assert all(rec["ci95"] is not None for rec in out["baseline_b"]["sae"].values() if rec["verdict"] != "not measured")
    write_report({**results, "verdicts": out}, tmp_path / "report.html")  # and the report says so
    html = (tmp_path / "report.html").read_text()
    assert NOT_ENOUGH_SEEDS in html and "random has 1 model seed(s)" in html


def test_docs_example_recomputes_verdicts(control_run, tmp_path, monkeypatch, capsys):
    out, _ = control_run
    page = Path(__file__).resolve().parents[1] / "docs" / "comparing.md"
    (code,) = re.findall(r"<!-- runnable: verdicts_from_results -->\n```python\n(.*?)```", page.read_text(), re.S)
    (tmp_path / "runs" / "verdicts").mkdir(parents=True)
    shutil.copy(out / "results.json", tmp_path / "runs" / "verdicts" / "results.json")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(page), "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out.strip() in ("better", "worse", NO_DIFFERENCE)
