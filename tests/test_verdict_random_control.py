"""The random-weights control: three seeds of a random-weights model against three trained baseline seeds
get `worse` on abstractness and explainability, with intervals that exclude 0, and the same data with the
groups swapped gets `better` (so the test can fail).

Sizes (benchmarks/control_verdict.py, docs/comparing.md "Checking the verdicts"): the session's tiny
verdict models (1 layer, d_model 32, 400 steps on ~100k distinct training tokens, so that they generalise),
one top-k SAE (64 latents, k 4) on blocks.0.hook_mlp_out, 2 dictionary seeds, 256 held-out sequences of
32 tokens: abstractness needs that many tokens per token id, or every latent scores 1 (clipped).
"""

import pytest

from saekit.config import DictionaryConfig, TrainConfig
from saekit.pipeline import run_comparison
from saekit.pipeline.verdicts import verdicts_from_results

MODELS = ["baseline0", "baseline1", "baseline2", "random0", "random1", "random2"]
N_EVAL = 256


@pytest.fixture(scope="module")
def control(verdict_models, tmp_path_factory):
    """One comparison of three baseline and three random model seeds; the groups are set by name (the
    session's baseline2 is in the group baseline_b for the null test)."""
    out = tmp_path_factory.mktemp("random_control")
    cfgs = {"sae": DictionaryConfig(kind="topk", d_in=32, n_latents=64, k=4, hook_name="blocks.0.hook_mlp_out")}
    tcfg = TrainConfig(batch_size=64, total_tokens=16_000, lr=3e-3, lr_warmup_steps=2, log_every=100)
    results = run_comparison(
        [verdict_models[m] for m in MODELS], cfgs, out, seeds=(0, 1), train_tokens=16_000, tcfg=tcfg,
        n_eval_seqs=N_EVAL, n_splice_seqs=4, n_explain_seqs=64, autointerp_latents=32, split_widths=False,
        synthetic=False, quiet=True, report=False,
    )  # fmt: skip
    names = [r["variant"] for r in results["dictionaries"]]
    base = sorted({n for n in names if n.startswith("baseline")})
    rand = sorted({n for n in names if n.startswith("random")})
    return results, base, rand


@pytest.mark.parametrize("axis", ["abstractness", "explainability"])
def test_random_control_is_worse_with_an_interval_excluding_zero(control, axis):
    results, base, rand = control
    assert len(base) == len(rand) == 3
    rec = verdicts_from_results(results, {"baseline": base, "random": rand})["verdicts"]["random"]["sae"][axis]
    assert rec["n_models"] == 3
    assert rec["verdict"] == "worse", rec
    assert rec["ci95"][1] < 0, rec  # the random control's value is below the baseline's, interval and all


@pytest.mark.parametrize("axis", ["abstractness", "explainability"])
def test_swapped_groups_are_better(control, axis):
    """The same figures with the roles swapped: the test reads the direction, not a constant."""
    results, base, rand = control
    rec = verdicts_from_results(results, {"baseline": rand, "random": base})["verdicts"]["random"]["sae"][axis]
    assert rec["verdict"] == "better" and rec["ci95"][0] > 0, rec
