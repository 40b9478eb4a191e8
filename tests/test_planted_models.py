"""Dictionaries on tiny models of a planted language, scored against its labels (research claims:
the baseline model's dictionary against the random control's and against chance), and the
``ground_truth`` axis of a comparison on planted-language models.

One session fixture trains the models (two baseline seeds, two random controls); see
docs/planted.md for the figures and the settings measured at larger scale.
"""

import json

import pytest
import torch

from saekit.config import DictionaryConfig, ModelConfig, TrainConfig
from saekit.data.planted import planted_language
from saekit.evaluation.ground_truth import recovery_summary
from saekit.evaluation.planted_scores import planted_activations
from saekit.models.train import train_variants
from saekit.training import train

SPEC = "planted:small"
MODEL = ModelConfig(n_layers=1, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, steps=400, lr=1e-2, warmup_steps=30,
                    batch_size=32, device="cpu")  # fmt: skip
HOOK = "blocks.0.hook_resid_post"
SAE = DictionaryConfig(kind="topk", d_in=64, n_latents=256, k=16, hook_name=HOOK)


@pytest.fixture(scope="session")
def planted_models(tmp_path_factory):
    """{"baseline-s0": folder, ...}: baseline and random control, model seeds 0 and 1, on planted:small."""
    root = tmp_path_factory.mktemp("planted_models")
    base = MODEL.replace(vocab_size=planted_language(SPEC).vocab_size)
    out = {}
    for seed in (0, 1):
        handles = train_variants(["baseline", "random"], root / f"seed{seed}", base.replace(seed=seed), dataset=SPEC)
        out.update({f"{v}-s{seed}": h for v, h in handles.items()})
    return out


@pytest.fixture(scope="session")
def recovery(planted_models):
    """Label recovery of one top-k SAE on the baseline (seed 0) and on the random control, and chance."""
    lang = planted_language(SPEC)
    tr_tokens, tr_labels = lang.rows(512, MODEL.n_ctx, seed=1)
    ev_tokens, ev_labels = lang.rows(256, MODEL.n_ctx, seed=12345)
    out = {}
    for name in ("baseline-s0", "random-s0"):
        model = planted_models[name].model
        x_tr, _ = planted_activations(model, tr_tokens, tr_labels, HOOK)
        x_ev, y_ev = planted_activations(model, ev_tokens, ev_labels, HOOK)
        tcfg = TrainConfig(batch_size=256, total_tokens=8 * len(x_tr), lr=4e-3, lr_warmup_steps=10, device="cpu")
        sae = train(SAE, x_tr, tcfg, progress=False).eval()
        with torch.no_grad():
            z = sae.encode(x_ev)
        out[name] = recovery_summary(z, y_ev, lang.is_contextual)
        out[f"{name}/chance"] = recovery_summary(z[torch.randperm(len(z), generator=torch.Generator().manual_seed(0))],
                                                 y_ev, lang.is_contextual)  # fmt: skip
    return out


def test_baseline_dictionary_recovers_token_level_labels(recovery):
    tl = recovery["baseline-s0"]["token_level"]
    assert tl["recovered_fraction"] >= 0.8, recovery
    assert recovery["random-s0"]["token_level"]["recovered_fraction"] < tl["recovered_fraction"] - 0.3, recovery


def test_baseline_finds_contextual_labels_the_random_control_does_not(recovery):
    base, rand = recovery["baseline-s0"]["contextual"], recovery["random-s0"]["contextual"]
    chance = recovery["random-s0/chance"]["contextual"]
    assert base["recovered_fraction"] >= rand["recovered_fraction"] + 0.2, recovery
    assert base["mean_best_f1"] >= rand["mean_best_f1"] + 0.15, recovery
    # the random control's contextual recovery stays near chance (its codes shuffled across tokens)
    assert rand["recovered_fraction"] <= 0.05 and rand["mean_best_f1"] <= chance["mean_best_f1"] + 0.1, recovery


def test_comparison_on_planted_models_has_a_ground_truth_verdict(planted_models, tmp_path):
    from saekit.pipeline import run_comparison

    folders = [planted_models[n].path for n in ("baseline-s0", "baseline-s1", "random-s0", "random-s1")]
    cfgs = {"sae": DictionaryConfig(kind="topk", d_in=64, n_latents=64, k=8, hook_name=HOOK)}
    tcfg = TrainConfig(batch_size=128, total_tokens=16_000, lr=4e-3, lr_warmup_steps=2, log_every=100)
    run_comparison(
        folders, cfgs, tmp_path, seeds=(0, 1), train_tokens=16_000, tcfg=tcfg, n_eval_seqs=64, n_splice_seqs=4,
        n_explain_seqs=32, autointerp_latents=16, split_widths=False, synthetic=False, quiet=True, report=False,
    )  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    rec = results["verdicts"]["random"]["sae"]["ground_truth"]
    assert rec["n_models"] == 2 and rec["n_seeds"] == 2 and rec["ci95"] is not None, rec
    lo, hi = rec["ci95"]
    assert rec["metric"].startswith("mean best-latent F1") and lo <= rec["delta"] <= hi
    assert rec["delta"] < 0, rec  # the random control's dictionaries find fewer planted labels
    per_dict = [r["axes"] for r in results["dictionaries"]]
    assert all(0 < a["ground_truth"] <= 1 and "ground_truth_context_f1" in a for a in per_dict)
    # the dictionaries were trained and scored on fresh rows of the models' planted language
    assert results["ground_truth"] == {"dataset": SPEC, "n_labels": 59, "n_contextual": 36}
