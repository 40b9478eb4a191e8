"""Crosscoder evaluation on held-out rows (per-source FVU, L0, dead fraction) and intervals over seeds."""

import math

import pytest
import torch

import saekit
from saekit.config import DictionaryConfig
from saekit.dictionaries.crosscoder import ReLUCrossCoder
from saekit.pipeline.stats import mean_t_interval


def planted_crosscoder(weak_b: float = 1.0) -> ReLUCrossCoder:
    """4 latents over 2 sources in 4 dims: 0 shared (e0; B writes it at ``weak_b``), 1 A-only (e1),
    2 B-only (e2), 3 never fires (its bias is far below zero)."""
    cc = ReLUCrossCoder(DictionaryConfig(kind="relu", d_in=4, n_latents=4, n_sources=2, source_names=("a", "b")))
    eye = torch.eye(4)
    with torch.no_grad():
        cc.W_dec.zero_()
        cc.W_dec[0, 0], cc.W_dec[0, 1] = eye[0], weak_b * eye[0]
        cc.W_dec[1, 0] = eye[1]
        cc.W_dec[2, 1] = eye[2]
        cc.W_dec[3, 0], cc.W_dec[3, 1] = eye[3], eye[3]
        cc.W_enc.zero_()
        cc.W_enc[0, :, 0] = eye[0]  # latent 0 reads A's e0 (A writes it at full strength)
        cc.W_enc[0, :, 1] = eye[1]
        cc.W_enc[1, :, 2] = eye[2]
        cc.b_enc.copy_(torch.tensor([0.0, 0.0, 0.0, -100.0]))
    return cc


def planted_rows(n: int = 20_000, seed: int = 0) -> dict[str, torch.Tensor]:
    """f0 (both models), f1 (A only), f2 (B only): independent, each on 30 % of rows, size U(1, 2)."""
    g = torch.Generator().manual_seed(seed)
    f = (torch.rand(n, 3, generator=g) < 0.3) * (1 + torch.rand(n, 3, generator=g))
    a = torch.zeros(n, 4)
    b = torch.zeros(n, 4)
    a[:, 0], a[:, 1] = f[:, 0], f[:, 1]
    b[:, 0], b[:, 2] = f[:, 0], f[:, 2]
    return {"a": a, "b": b, "f": f}


def test_per_source_metrics_match_the_planted_crosscoder():
    rows = planted_rows()
    data = {"a": rows["a"], "b": rows["b"]}
    m = saekit.evaluate(planted_crosscoder(), data)
    assert m["per_source"]["a"]["fvu"] < 1e-10 and m["per_source"]["b"]["fvu"] < 1e-10 and m["fvu"] < 1e-10
    active = (rows["f"] > 0).float()
    assert m["l0"] == pytest.approx(float(active.sum(1).mean()), rel=1e-6)
    # A's L0 counts latents 0 and 1 (latent 2 is B's alone), B's counts 0 and 2
    assert m["per_source"]["a"]["l0"] == pytest.approx(float(active[:, :2].sum(1).mean()), rel=1e-6)
    assert m["per_source"]["b"]["l0"] == pytest.approx(float(active[:, [0, 2]].sum(1).mean()), rel=1e-6)
    assert m["dead_fraction"] == pytest.approx(0.25)
    assert m["per_source"]["a"]["dead_fraction"] == pytest.approx(1 / 3)
    assert m["per_source"]["a"]["n_latents"] == 3 and m["per_source"]["b"]["n_latents"] == 3
    # B's decoder writes the shared feature at a quarter: B's error is 0.75 f0 e0, A stays exact
    weak = saekit.evaluate(planted_crosscoder(weak_b=0.25), data)
    f0, f2 = rows["f"][:, 0], rows["f"][:, 2]
    expected = float((0.75 * f0).pow(2).sum() / ((f0 - f0.mean()).pow(2).sum() + (f2 - f2.mean()).pow(2).sum()))
    assert weak["per_source"]["b"]["fvu"] == pytest.approx(expected, rel=1e-4)
    assert weak["per_source"]["a"]["fvu"] < 1e-10
    # per-source sums do not depend on the batch size
    again = saekit.evaluation.crosscoder_metrics(planted_crosscoder(weak_b=0.25), data, batch_size=333)
    assert again["per_source"]["b"]["fvu"] == pytest.approx(weak["per_source"]["b"]["fvu"], rel=1e-9)


def test_evaluate_refuses_to_splice_a_crosscoder_into_one_model():
    with pytest.raises(saekit.ConfigError, match="cannot splice a crosscoder"):
        saekit.evaluate(planted_crosscoder(), planted_rows(100), model=object())


def test_mean_t_interval_is_students_t_over_seeds():
    out = mean_t_interval([1, 2, 3])
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} · sd / √n with sd = 1
    assert out["mean"] == pytest.approx(2.0)
    assert (out["lo"], out["hi"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    one = mean_t_interval([5])
    assert one["mean"] == 5 and one["lo"] is None and one["n"] == 1
    assert mean_t_interval([4, 4, float("nan")])["values"] == [4.0, 4.0]


def test_report_shows_exclusive_latents_with_what_they_write_into_each_model(tmp_path):
    """The planted crosscoder's latent 1 is A's alone and latent 2 B's: the analysis finds them,
    their top contexts write into their owner only, and the page shows counts, metrics and contexts."""
    from saekit.pipeline.crosscoder import combine_seeds
    from saekit.pipeline.crosscoder_analysis import analyse_held_out, held_out_from_grids
    from saekit.report.crosscoder import write_crosscoder_report

    rows = planted_rows(n=16 * 33)
    grids = [torch.cat([torch.zeros(16, 1, 4), rows[s].reshape(16, 33, 4)], dim=1) for s in ("a", "b")]  # BOS at 0
    tokens = torch.arange(16 * 34).reshape(16, 34) % 50
    held = held_out_from_grids(grids, tokens)
    assert torch.equal(held.acts[:, 0], rows["a"]) and held.where[0].tolist() == [0, 1]
    analyses = {s: analyse_held_out(planted_crosscoder(weak_b=w), held) for s, w in ((0, 1.0), (1, 0.5))}
    results = combine_seeds(analyses)
    assert results["sharing"]["classes"] == ["shared", "a", "b", "dead"]
    owners = {ex["latent"]: ex["owner"] for ex in results["examples"]}
    assert owners == {1: "a", 2: "b"}
    for ex in results["examples"]:
        other = "b" if ex["owner"] == "a" else "a"
        assert all(c["writes"][ex["owner"]] > 0 and c["writes"][other] == 0 for c in ex["contexts"])
        assert ex["contexts"][0]["text"].endswith("⟧")
    assert results["over_seeds"]["counts"]["shared"]["values"] == [1, 1]
    fvu_b = results["over_seeds"]["metrics"]["per_source"]["b"]["fvu"]
    assert fvu_b["values"][0] < 1e-10 < fvu_b["values"][1] and fvu_b["lo"] < fvu_b["mean"] < fvu_b["hi"]
    html = write_crosscoder_report(results, tmp_path).read_text()
    assert "latent 1: a only" in html and "writes into b" in html and "seed 1" in html


def test_interval_is_clipped_to_what_the_quantity_can_take():
    raw = mean_t_interval([0, 3])
    clipped = mean_t_interval([0, 3], bounds=(0, 64))
    assert raw["lo"] < 0 and clipped["lo"] == 0 and clipped["hi"] == raw["hi"] and clipped["mean"] == 1.5
