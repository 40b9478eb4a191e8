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
from saekit.evaluation.ground_truth import label_recovery, recovery_summary
from saekit.evaluation.planted_scores import planted_activations
from saekit.models.train import train_variants
from saekit.training import train

SPEC = "planted:small"
STEPS, STEPS_S1 = 600, 100
CTX_F1, CTX_MORE = 0.5, 10  # contextual labels "found": best F1 >= 0.5; the baseline finds >= 10 more
# weight decay 1.0 takes the random initialisation out of the embeddings, leaving each token class one
# clean direction (without it 57-80 % of token-level labels are recovered, with it 80-97 %: docs/planted.md)
MODEL = ModelConfig(n_layers=1, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, steps=STEPS, lr=1e-2, warmup_steps=30,
                    batch_size=32, weight_decay=1.0, device="cpu")  # fmt: skip
# token-level labels are read where the model keeps the current token (the embedding), contextual ones
# at the end of the (one-layer) model, where attention has mixed the context in
HOOKS = {"token_level": "hook_embed", "contextual": "blocks.0.hook_resid_post"}
# a dictionary wider than the vocabulary (532) still gives each token class one latent (k 4 per token), and
# splits or merges fewer classes than 256 latents do
WIDTHS = {"token_level": 1024, "contextual": 256}


@pytest.fixture(scope="session")
def planted_models(tmp_path_factory):
    """{"baseline-s0": handle, ...}: baseline and random control on planted:small; the pipeline test's
    second baseline seed (s1) is trained for fewer steps."""
    root = tmp_path_factory.mktemp("planted_models")
    base = MODEL.replace(vocab_size=planted_language(SPEC).vocab_size)
    out = {}
    for seed, steps in ((0, STEPS), (1, STEPS_S1)):
        handles = train_variants(["baseline", "random"], root / f"seed{seed}", base.replace(seed=seed, steps=steps), dataset=SPEC)
        out.update({f"{v}-s{seed}": h for v, h in handles.items()})
    return out


@pytest.fixture(scope="session")
def recovery(planted_models):
    """Label recovery by kind of a top-k SAE (WIDTHS latents, k 4) at each kind's hookpoint, on the baseline
    (seed 0) and on the random control, and of the baseline's codes shuffled across tokens (chance)."""
    lang = planted_language(SPEC)
    tr_tokens, tr_labels = lang.rows(512, MODEL.n_ctx, seed=1)
    ev_tokens, ev_labels = lang.rows(256, MODEL.n_ctx, seed=12345)
    out = {}
    for name in ("baseline-s0", "random-s0"):
        model = planted_models[name].model
        for kind, hook in HOOKS.items():
            x_tr, _ = planted_activations(model, tr_tokens, tr_labels, hook)
            x_ev, y_ev = planted_activations(model, ev_tokens, ev_labels, hook)
            tcfg = TrainConfig(batch_size=256, total_tokens=8 * len(x_tr), lr=4e-3, lr_warmup_steps=10, device="cpu")
            cfg = DictionaryConfig(kind="topk", d_in=64, n_latents=WIDTHS[kind], k=4, hook_name=hook)
            sae = train(cfg, x_tr, tcfg, progress=False).eval()
            with torch.no_grad():
                z = sae.encode(x_ev)
            out[name, kind] = recovery_summary(z, y_ev, lang.is_contextual)[kind]
            out[name, kind]["best_f1"] = label_recovery(z, y_ev)["best_f1"][(lang.is_contextual == (kind == "contextual")).numpy()]
            shuffled = z[torch.randperm(len(z), generator=torch.Generator().manual_seed(0))]
            out[name, kind, "chance"] = recovery_summary(shuffled, y_ev, lang.is_contextual)[kind]
    return out


def test_baseline_dictionary_recovers_token_level_labels(recovery):
    base, rand = recovery["baseline-s0", "token_level"], recovery["random-s0", "token_level"]
    # the target: >= 80 % of token-level labels have a latent with F1 >= 0.8 (measured 0.80-0.97
    # over two model seeds and three SAE seeds, 0.90-0.97 for these seeds at one or two torch threads; mean
    # best F1 0.93-0.95, 0.84-0.86 without weight decay; docs/planted.md)
    assert base["recovered_fraction"] >= 0.8 and base["mean_best_f1"] >= 0.9, base
    assert rand["recovered_fraction"] <= 0.15 and rand["mean_best_f1"] <= 0.4, rand


def test_baseline_finds_contextual_labels_the_random_control_does_not(recovery):
    base, rand = recovery["baseline-s0", "contextual"], recovery["random-s0", "contextual"]
    chance = recovery["random-s0", "contextual", "chance"]
    found_base, found_rand = int((base["best_f1"] >= CTX_F1).sum()), int((rand["best_f1"] >= CTX_F1).sum())
    assert found_base >= found_rand + CTX_MORE, (found_base, found_rand)
    assert base["mean_best_f1"] >= rand["mean_best_f1"] + 0.2, (base, rand)
    # the random control's contextual recovery stays near chance (its own codes shuffled across tokens)
    assert rand["mean_best_f1"] <= chance["mean_best_f1"] + 0.1, (rand, chance)


def test_comparison_on_planted_models_has_a_ground_truth_verdict(planted_models, tmp_path):
    from saekit.pipeline import run_comparison

    folders = [planted_models[n].path for n in ("baseline-s0", "baseline-s1", "random-s0", "random-s1")]
    cfgs = {"sae": DictionaryConfig(kind="topk", d_in=64, n_latents=64, k=4, hook_name=HOOKS["contextual"])}
    tcfg = TrainConfig(batch_size=128, total_tokens=8_000, lr=4e-3, lr_warmup_steps=2, log_every=100)
    run_comparison(
        folders, cfgs, tmp_path, seeds=(0, 1), train_tokens=8_000, tcfg=tcfg, n_eval_seqs=32, n_splice_seqs=4,
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
    assert results["ground_truth"] == {"dataset": SPEC, "n_labels": 66, "n_contextual": 36}
