"""saekit.editing on a tiny model trained with a planted pattern (<trigger> is always followed by
<cont>): localisation finds the units that carry it, ablating them removes the continuation while
control loss barely moves (random units of the same number do not), steering with the planted
latent raises <cont>'s probability monotonically; latent edits with the error term added back are
exact when nothing is ablated; bad input fails with one sentence."""

from __future__ import annotations

import random

import pytest
import torch
from planted_edit_model import CONT, HOOK_NEURONS, HOOK_RESID, planted_texts, train_planted_model

from saekit.data import load_corpus
from saekit.editing import (
    ablation_curve,
    concept_from_pattern,
    concept_from_texts,
    editability_axis,
    localise,
    make_units,
    measure,
    steering_curve,
)
from saekit.editing.ablate import ablation_hook
from saekit.errors import ConfigError, DataError


@pytest.fixture(scope="session")
def planted():
    torch.manual_seed(0)
    handle, tokens = train_planted_model()
    texts = [ln for doc in planted_texts(load_corpus("validation")[:1], seed=1) for ln in doc.split("\n") if ln.strip()]
    concept = concept_from_pattern(texts[:700], CONT, handle.tokenizer, 32)
    return handle, tokens, concept


@pytest.fixture(scope="session")
def sae(planted):
    import saekit

    handle, tokens, _ = planted
    seen = {}
    with torch.no_grad():
        handle.model.run_with_hooks(tokens[:2000], fwd_hooks=[(HOOK_RESID, lambda a, hook: seen.setdefault("a", a))])
    x = seen["a"][:, 1:].reshape(-1, 32)
    # The editing tools are tested on one fixed dictionary: the rate and the decoder's rates are pinned
    # (session 8's: every parameter at lr). At session 9's default decoder rates (3x / 0.3x) seed 0's top
    # two latents include one the control text uses (collateral 0.094 nats); over seeds 0-4 (ablating the
    # top 2) collateral 0.010-0.094, median 0.016, <cont>'s probability removed 0.97-0.99, against
    # 0.008-0.038 and 0.65-0.99 at these rates.
    cfg = saekit.DictionaryConfig(
        kind="topk", d_in=32, n_latents=64, k=4, hook_name=HOOK_RESID, W_dec_lr_scale=1.0, b_dec_lr_scale=1.0
    )
    tcfg = saekit.TrainConfig(batch_size=512, lr=3e-3, lr_warmup_steps=100, total_tokens=len(x), seed=0, device="cpu", log_every=10**9)
    return saekit.train(cfg, x, tcfg).eval()


def test_planted_pattern_is_learned(planted):
    handle, _, concept = planted
    assert concept.targets == [handle.tokenizer.convert_tokens_to_ids(CONT)]
    assert measure(handle, concept)["concept_prob"] > 0.9


def test_neuron_localisation_is_causal(planted):
    """The top 16 neurons (of 64) carry the continuation: ablating them removes most of it at small
    collateral cost; 16 random neurons remove almost nothing and cost more."""
    handle, _, concept = planted
    units = make_units(handle, HOOK_NEURONS)
    ranking = localise(units, concept, top=1, contexts=0)["ranking"]
    top = ablation_curve(units, concept, ranking, [0, 16])
    rand = list(range(64))
    random.Random(0).shuffle(rand)
    other = ablation_curve(units, concept, rand, [0, 16])
    assert top["prob_removed"][-1] > 0.5 > 0.05 > other["prob_removed"][-1]
    assert top["collateral"][-1] < 0.1
    assert top["concept_drop"][-1] > 20 * abs(other["concept_drop"][-1])


def planted_direction(handle, concept) -> torch.Tensor:
    """Ground truth for the planted latent: mean residual at trigger positions minus at control positions."""
    from saekit.editing.steer import mean_difference_direction

    return mean_difference_direction(make_units(handle, HOOK_RESID), concept)


def test_latent_localisation_ranks_the_planted_latents_first(planted, sae):
    """The top-ranked latent separates trigger positions perfectly and is the latent whose decoder row
    points most along the planted direction (an independent, geometric ground truth). (How many
    latents share the planted feature depends on the dictionary's initialisation: one here, two
    with the initialisation before 2026-12-01.)"""
    handle, _, concept = planted
    found = localise(make_units(handle, dictionary=sae), concept, top=3, contexts=2)
    cos = torch.nn.functional.normalize(sae.W_dec.detach(), dim=-1) @ planted_direction(handle, concept)
    assert found["ranking"][0] == int(cos.argmax()) and cos.max() > 0.7
    assert found["top"][0]["auroc"] > 0.99 > found["top"][2]["auroc"]
    assert "[[<trigger>]]" in found["top"][0]["contexts"][0]["text"]


def test_ablating_the_planted_latents_removes_the_continuation(planted, sae):
    handle, _, concept = planted
    units = make_units(handle, dictionary=sae)
    ranking = localise(units, concept, top=1, contexts=0)["ranking"]
    curve = ablation_curve(units, concept, ranking, [0, 2])
    assert curve["prob_removed"][1] > 0.9  # most of <cont>'s probability after <trigger> is gone
    assert abs(curve["collateral"][1]) < 0.05  # control loss moves little (nats)
    mid = ablation_curve(units, concept, ranking[32:], [0, 2])  # latents from the middle of the ranking
    assert mid["prob_removed"][1] < 0.05
    meaned = ablation_curve(units, concept, ranking, [2], mode="mean")  # the planted latents are ~off on control text
    assert meaned["prob_removed"][0] > 0.9


def test_latent_ablation_of_nothing_leaves_outputs_unchanged(planted, sae):
    """Reconstruction + error term with no latent ablated is the clean forward pass (float tolerance);
    without the error term it would not be (the SAE is not exact)."""
    from saekit.evaluation.splice import run_logits

    handle, _, concept = planted
    units = make_units(handle, dictionary=sae)
    toks = concept.control_tokens[:8]
    clean = run_logits(handle, toks)
    edited = run_logits(handle, toks, {HOOK_RESID: ablation_hook(units, [], "zero")})
    torch.testing.assert_close(edited, clean, atol=1e-4, rtol=1e-4)
    spliced = run_logits(handle, toks, {HOOK_RESID: lambda a: sae(a.reshape(-1, 32)).reshape(a.shape)})
    assert (spliced - clean).abs().max() > 1e-2


def test_steering_raises_the_continuation_monotonically(planted, sae):
    handle, _, concept = planted
    units = make_units(handle, dictionary=sae)
    top = localise(units, concept, top=1, contexts=0)["ranking"][0]
    curve = steering_curve(units, concept, top, [0.0, 0.25, 0.5, 0.75, 1.0])
    t = curve["target_logprob"]
    assert all(b > a for a, b in zip(t, t[1:])), t
    assert t[-1] - t[0] > 2.0  # nats: <cont> becomes far more likely in control text
    assert curve["control_loss"][-1] > curve["control_loss"][0]  # fluency pays for it
    diff = steering_curve(units, concept, "mean_difference", [0.0, 0.5, 1.0])["target_logprob"]
    assert diff[0] < diff[1] < diff[2] and diff[2] - diff[0] > 2.0


def test_editability_axis_shape_and_direction(planted, sae):
    """One number per (model seed, dictionary seed): the planted latent alone removes half the concept;
    the 64 neurons need more than two units."""
    handle, _, concept = planted
    assert editability_axis({0: handle}, {0: {0: sae}}, concept, "units_to_half", n_max=2) == {0: {0: 1.0}}
    neurons = editability_axis({0: handle}, None, concept, "units_to_half", hook=HOOK_NEURONS, n_max=2)
    assert list(neurons) == [0] and list(neurons[0]) == [0] and neurons[0][0] != neurons[0][0]  # NaN: not within 2


def test_bad_input_fails_with_one_sentence(planted, sae):
    handle, _, concept = planted
    tok = handle.tokenizer
    with pytest.raises(DataError, match="no concept token"):
        concept_from_texts([], ["some control text"], tok, 32)
    with pytest.raises(DataError, match="no control token"):
        concept_from_texts(["to be or not"], ["   "], tok, 32)
    with pytest.raises(ConfigError, match="unit index 64 is out of range.*0 to 63"):
        ablation_curve(make_units(handle, dictionary=sae), concept, [64], [0, 1])
    with pytest.raises(ConfigError, match="unit index 99 is out of range"):
        steering_curve(make_units(handle, HOOK_NEURONS), concept, 99, [0.0])
    with pytest.raises(ConfigError, match="no hookpoint 'blocks.3.mlp.hook_post'.*close names: blocks.0.mlp.hook_post"):
        make_units(handle, "blocks.3.mlp.hook_post")


@pytest.fixture(scope="session")
def planted_folders(planted, sae, tmp_path_factory):
    from planted_edit_model import MODEL_CFG

    from saekit.models.store import save_model_folder

    handle, _, _ = planted
    root = tmp_path_factory.mktemp("planted")
    handle.path = root / "model"
    save_model_folder(handle, MODEL_CFG, {"name": "planted", "variant": "baseline"})
    sae.save(root / "sae")
    return root


@pytest.mark.parametrize("action", ["localize", "ablate", "steer"])
def test_edit_command_writes_json_and_png(planted_folders, action, tmp_path, capsys):
    import json

    from saekit.cli import main

    out = tmp_path / "out"
    argv = ["edit", action, "--model", str(planted_folders / "model"), "--dictionary", str(planted_folders / "sae"),
            "--concept", "words:love|loves|loved", "--max-texts", "40", "--n-ctx", "32", "--n-max", "2",
            "--alphas", "0,0.5", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / f"edit_{action}.json").read_text())
    assert (out / f"edit_{action}.png").read_bytes()[:4] == b"\x89PNG"
    assert result["kind"] == "latent" and result["hook"] == HOOK_RESID
    assert {"localize": "ranking", "ablate": "selectivity_auc", "steer": "steering_efficiency"}[action] in result
    assert "wrote" in capsys.readouterr().out
    assert main(argv) == 2  # refuses to overwrite
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_edit_command_bad_hook_is_one_line(planted_folders, tmp_path, capsys):
    from saekit.cli import main

    code = main(["edit", "localize", "--model", str(planted_folders / "model"), "--hook", "blocks.0.mlp.hook_pots",
                 "--concept", "character:IAGO", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no hookpoint 'blocks.0.mlp.hook_pots'" in err


def test_auroc_and_welch_t_match_scipy():
    import numpy as np
    from scipy.stats import mannwhitneyu, ttest_ind

    from saekit.editing.localise import auroc_and_t

    rng = np.random.default_rng(0)
    a = np.round(rng.normal(0.5, 1, (40, 5)), 1)  # rounding makes ties
    b = np.round(rng.normal(0.0, 1, (70, 5)), 1)
    auc, t = auroc_and_t(a, b, chunk=2)
    np.testing.assert_allclose(auc, mannwhitneyu(a, b, axis=0).statistic / (40 * 70))
    np.testing.assert_allclose(t, ttest_ind(a, b, axis=0, equal_var=False).statistic)


def test_built_in_concepts_mark_the_right_positions(planted):
    from saekit.editing import character_concept, word_family_concept

    tok = planted[0].tokenizer
    words = word_family_concept("love|loves|loved", tok, 32, max_texts=50)
    nxt = words.concept_tokens[:, 1:][words.concept_mask[:, :-1]]
    firsts = {tok.decode([t]).strip().lower() for t in nxt.tolist()}  # the token holding the word's first letter
    assert len(nxt) >= 50 and all(w and ("loves".startswith(w) or w.startswith("lov")) for w in firsts), firsts
    assert not any("love" in tok.decode(row).lower() for row in words.control_tokens.tolist())
    iago = character_concept("Iago", tok, 32, split="validation", max_texts=20)
    assert iago.name == "character IAGO" and int(iago.concept_mask.sum()) > 100
    assert int(iago.control_mask.sum()) > 100
    with pytest.raises(DataError, match="no speech by 'Nobody'"):
        character_concept("Nobody", tok, 32)


def test_edit_page_shows_the_ablation_and_steering_curves_of_the_folder(planted_folders, tmp_path):
    """saekit edit ablate then steer into one folder: edit_report.html holds both sections, each with its
    PNG embedded byte for byte and a table row per point of the curve written to the JSON."""
    import base64
    import html
    import json
    import re

    from saekit.cli import main

    out = tmp_path / "out"
    base = ["--model", str(planted_folders / "model"), "--dictionary", str(planted_folders / "sae"),
            "--concept", "words:love|loves|loved", "--max-texts", "40", "--n-ctx", "32", "--out", str(out)]
    assert main(["edit", "ablate", *base, "--n-max", "2", "--probe"]) == 0
    page = (out / "edit_report.html").read_text()
    assert 'id="ablate"' in page and 'id="steer"' not in page
    assert main(["edit", "steer", *base, "--alphas", "0,0.5,1"]) == 0
    page = (out / "edit_report.html").read_text()
    for action in ("ablate", "steer"):
        section = page.split(f'id="{action}"', 1)[1].split("<h2", 1)[0]
        src = re.search(r'src="data:image/png;base64,([^"]+)"', section).group(1)
        assert base64.b64decode(src) == (out / f"edit_{action}.png").read_bytes()
        r = json.loads((out / f"edit_{action}.json").read_text())
        rows = re.findall(r"<tr><td>(.*?)</td>", section)
        assert len(rows) == len(r["n"] if action == "ablate" else r["alpha"])
        cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", section)]
    ablate = json.loads((out / "edit_ablate.json").read_text())
    assert f"{ablate['concept_drop'][-1]:.3f}" in page and f"{ablate['collateral'][-1]:.3f}" in page
    assert cells[0] == "0.00"  # steer table starts at α = 0
    # --probe: the probe's held-out accuracy per n, in the JSON and as a column of the ablation table
    assert len(ablate["probe_accuracy"]) == len(ablate["n"]) and ablate["probe_drop"][0] == 0.0
    assert "<th>probe accuracy</th>" in page.split('id="ablate"', 1)[1].split("<h2", 1)[0]


def test_probe_effect_falls_when_the_planted_latents_are_ablated(planted, sae):
    """The probe-based concept effect: a probe fitted on the clean residual separates trigger positions
    from control positions; ablating the two top-ranked (planted) latents takes most of that away,
    two latents from the middle of the ranking do not."""
    from saekit.editing.probe_effect import probe_ablation_curve

    handle, _, concept = planted
    units = make_units(handle, dictionary=sae)
    ranking = localise(units, concept, top=1, contexts=0)["ranking"]
    top = probe_ablation_curve(units, concept, ranking, [0, 2], max_positions=300)
    mid = probe_ablation_curve(units, concept, ranking[32:], [0, 2], max_positions=300)
    assert top["probe_accuracy"][0] == mid["probe_accuracy"][0] > 0.95  # the same clean probe
    assert top["probe_accuracy"][1] < 0.65  # near chance (0.5): measured 1.0 -> 0.5
    assert abs(mid["probe_drop"][1]) < 0.05
