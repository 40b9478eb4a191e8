"""`saekit sweep-variant`: models at several coefficients compared, each axis against the LM cost."""

import pytest

from saekit.cli import main
from saekit.config import DictionaryConfig, ModelConfig, TrainConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.pipeline.sweep import model_plan, pareto_points, sweep_variant


def _results(points):
    """A results dict with act_l1 groups at the given (coef, lm_cost delta, abstractness delta)."""
    groups, variants, verdicts = {}, {}, {}
    for coef, lm, ab in points:
        g = f"act_l1@{coef:g}"
        groups[g] = [f"{g}-s0"]
        variants[f"{g}-s0"] = {"info": {"variant": "act_l1", "coef": coef}}
        rec = {"delta": lm, "ci95": [lm - 0.1, lm + 0.1], "verdict": "worse"}
        verdicts[g] = {"sae": {"lm_cost": rec, "abstractness": {"delta": ab, "ci95": None, "verdict": "better"}}}
    return {"groups": groups, "variants": variants, "verdicts": verdicts}


def test_pareto_front_keeps_points_no_other_beats_on_both():
    # 0.01: cheap, small gain; 0.03: dearer and a smaller gain (dominated); 0.1: dearest, largest gain
    pts = pareto_points(_results([(0.01, 0.1, 0.05), (0.03, 0.3, 0.02), (0.1, 0.5, 0.2)]), "act_l1")["sae"]
    assert [(p["coef"], p["front"]) for p in pts["abstractness"]] == [(0.01, True), (0.03, False), (0.1, True)]


def test_model_plan_names_every_model_once():
    plan = model_plan("act_l1", [0.01, 0.1], [0, 1], ModelConfig())
    assert sorted(plan) == sorted(
        [f"{v}-s{s}" for v in ("baseline", "random") for s in (0, 1)]
        + [f"act_l1-c{c}-s{s}" for c in ("0.01", "0.1") for s in (0, 1)]
    )
    assert plan["act_l1-c0.1-s1"].coef == 0.1 and plan["act_l1-c0.1-s1"].seed == 1


def test_sweep_trains_compares_and_plots(tmp_path):
    tok = default_tokenizer()
    data = (
        pack_tokens(load_corpus("train")[:1], tok, 32, max_rows=64),
        pack_tokens(load_corpus("validation")[:1], tok, 32, max_rows=8),
    )
    mcfg = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, steps=30, batch_size=8, device="cpu")
    cfgs = {"sae": DictionaryConfig(kind="topk", d_in=32, n_latents=32, k=4, hook_name="blocks.0.hook_mlp_out")}
    tcfg = TrainConfig(batch_size=64, total_tokens=4_000, lr=3e-3, lr_warmup_steps=2, log_every=100)
    results = sweep_variant(
        "act_l1", [0.01, 0.3], [0], tmp_path, model_cfg=mcfg, model_data=(tok, data), dict_cfgs=cfgs,
        dict_seeds=(0, 1), train_tokens=4_000, tcfg=tcfg, n_eval_seqs=8, n_splice_seqs=2, n_explain_seqs=16,
        autointerp_latents=8, split_widths=False, synthetic=False, quiet=True,
    )  # fmt: skip
    assert set(results["groups"]) == {"baseline", "random", "act_l1@0.01", "act_l1@0.3"}
    pts = results["sweep"]["points"]["sae"]["reconstruction"]
    assert [p["coef"] for p in pts] == [0.01, 0.3]
    loss = results["lm_loss"]
    assert pts[1]["lm_cost"] == pytest.approx(loss["act_l1@0.3"] - loss["baseline"])
    png = tmp_path / "compare" / "pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert (tmp_path / "compare" / "report.html").exists()
    # the models are there to be reused
    assert (tmp_path / "models" / "act_l1-c0.3-s0" / "saekit_model.json").exists()


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["--variant", "baseline", "--coefs", "0.1"], "--variant must be a regularised variant"),
        (["--variant", "act_l1", "--coefs", "0.1", "0.1"], "--coefs must be one or more distinct"),
        (["--variant", "act_l1", "--coefs", "0.1", "--seeds", "0", "0"], "--seeds must be one or more distinct"),
    ],
)
def test_sweep_cli_bad_input_is_one_sentence(tmp_path, capsys, argv, expect):
    assert main(["sweep-variant", *argv, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # nothing trained
