"""The comparison pipeline end to end on two tiny real model variants, its report in chromium, the CLI."""

import json
import math
import re

import numpy as np
import pytest
import torch

from saekit.cli import main
from saekit.config import DictionaryConfig, ModelConfig, TrainConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.io import load
from saekit.models import train_model
from saekit.pipeline import run_comparison
from saekit.report.browser import find_chromium, images_loaded, screenshot


@pytest.fixture(scope="module")
def variant_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[:1], tok, 32, max_rows=160)
    val = pack_tokens(load_corpus("validation")[:1], tok, 32, max_rows=16)
    # trained long enough to move away from its initialisation, which the random control keeps
    base = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=128, n_ctx=32, steps=400, batch_size=8, device="cpu")
    for v in ("baseline", "random"):
        train_model(base.replace(variant=v), root / v, tokenizer=tok, data=(train, val), progress=False)
    return [root / "baseline", root / "random"]


def _tiny_comparison(variant_dirs, out, **kw):
    """The comparison every test here shares: a top-k SAE and a top-k transcoder, two seeds, tiny budgets
    (but ~250 steps: enough for two seeds of one model to agree beyond chance)."""
    cfgs = {
        "sae": DictionaryConfig(kind="topk", d_in=32, n_latents=64, k=4, hook_name="blocks.0.hook_mlp_out"),
        "transcoder": DictionaryConfig(
            kind="topk", d_in=32, n_latents=64, k=4, transcoder=True, hook_name="blocks.0.ln2.hook_normalized"
        ),
    }
    tcfg = TrainConfig(batch_size=64, total_tokens=16_000, lr=3e-3, lr_warmup_steps=2, log_every=100)
    settings = dict(
        seeds=(0, 1),
        train_tokens=16_000,
        tcfg=tcfg,
        n_eval_seqs=16,
        n_splice_seqs=4,
        n_explain_seqs=64,
        autointerp_latents=16,
        synthetic=False,
        quiet=True,
    )
    return run_comparison(variant_dirs, cfgs, out, **{**settings, **kw})


@pytest.fixture(scope="module")
def comparison(variant_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return out, _tiny_comparison(variant_dirs, out, browse=True, browse_tokens=2000)


def test_results_cover_every_variant_dictionary_and_seed(comparison):
    out, results = comparison
    on_disk = json.loads((out / "results.json").read_text())  # strict JSON: NaN written as null
    assert on_disk["settings"]["seeds"] == [0, 1]
    keys = {(r["variant"], r["dict"], r["seed"]) for r in on_disk["dictionaries"]}
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["dict"], r["seed"]) for r in log] == [
        (r["variant"], r["dict"], r["seed"]) for r in on_disk["dictionaries"]
    ]
    assert keys == {(v, d, s) for v in ("baseline", "random") for d in ("sae", "transcoder") for s in (0, 1)}
    for r in results["dictionaries"]:
        m = r["metrics"]
        assert m["l0"] == pytest.approx(4.0) and math.isfinite(m["fvu"])
        assert m["splice_hook"] == ("blocks.0.hook_mlp_out")  # the transcoder replaces the MLP output there
        assert m["mlp_replacement"] == (r["dict"] == "transcoder")
        assert r["autointerp"]["f1"]["n"] > 0 and 0 <= r["autointerp"]["f1"]["mean"] <= 1


def test_seed_noise_floor_is_above_chance_and_the_random_control_below_it(comparison):
    """The comparison's central claim, on values: dictionaries of one model (two seeds) agree beyond
    chance, and a baseline dictionary agrees with a random-weights control's less than with its seed twin."""
    _, results = comparison
    for name in ("sae", "transcoder"):
        m = results["matching"][name]
        floor = {v: r["decoder"]["hungarian_mean_cos"] for v, r in m["noise_floor"].items()}
        cross = m["cross"][0]["decoder"]["hungarian_mean_cos"]
        chance = m["chance"]["hungarian_mean_cos"]
        assert min(floor.values()) > chance + 0.05, (name, floor, chance)
        assert cross < min(floor.values()) - 0.03, (name, cross, floor)
        corr_floor = min(r["act_corr_mean"] for r in m["noise_floor"].values())
        assert m["cross"][0]["act_corr_mean"] < corr_floor - 0.05, (name, m["cross"][0]["act_corr_mean"], corr_floor)


def test_saved_dictionaries_load_and_seeds_differ(comparison):
    out, _ = comparison
    a = load(out / "baseline" / "sae" / "seed0")
    b = load(out / "baseline" / "sae" / "seed1")
    assert a.W_dec.shape == (64, 32) and not torch.equal(a.W_dec, b.W_dec)
    assert a.cfg.variant == "baseline" and a.cfg.hook_name == "blocks.0.hook_mlp_out"


def test_matching_reports_noise_floor_cross_pairs_and_chance(comparison):
    _, results = comparison
    for name in ("sae", "transcoder"):
        m = results["matching"][name]
        assert set(m["noise_floor"]) == {"baseline", "random"}
        assert [(r["a"], r["b"]) for r in m["cross"]] == [("baseline", "random")]
        for r in [*m["noise_floor"].values(), *m["cross"], m["chance"]]:
            curve = r["decoder"]["shared_fraction"] if "decoder" in r else r["shared_fraction"]
            assert curve[0] == pytest.approx(1.0) and all(np.diff(curve) <= 1e-12)  # falls with the threshold
        cross = results["cross_application"][name]
        assert set(cross) == {"baseline", "random"} and set(cross["random"]) == {"baseline", "random"}
    assert set(results["feature_splitting"]) == {"baseline", "random"}
    assert results["feature_splitting"]["baseline"]["narrow_n_latents"] == 16


def test_report_is_self_contained_and_renders_in_chromium(comparison, tmp_path):
    out, results = comparison
    html = (out / "report.html").read_text()
    for section in (
        "Summary",
        "Sparsity vs fidelity",
        "Feature density",
        "auto-interpretation",
        "noise floor",
        "Cross-application",
        "Example latents",
        "Cost of each regulariser",
    ):
        assert section in html
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # nothing fetched from outside
    # the only links: the run's own feature browsers (relative paths, checked in the test below)
    assert all(h.startswith("browser/") for h in re.findall(r'href="([^"]+)"', html))
    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    ok, total = images_loaded(out / "report.html")
    assert total == len(srcs) and ok == total
    png = screenshot(out / "report.html", tmp_path / "report.png", height=1200)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_eval_cli_prints_and_saves_core_metrics(comparison, variant_dirs, tmp_path, capsys):
    out, _ = comparison
    dest = tmp_path / "m.json"
    rc = main(
        [
            "eval",
            str(out / "baseline" / "transcoder" / "seed0"),
            "--model",
            str(variant_dirs[0]),
            "--seqs",
            "8",
            "--splice-seqs",
            "4",
            "--out",
            str(dest),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "CE loss recovered (zero abl.)" in printed and "FVU" in printed
    saved = json.loads(dest.read_text())
    assert saved["l0"] == pytest.approx(4.0) and saved["mlp_replacement"] is True


def test_compare_cli_fills_dimensions_from_the_model(variant_dirs, tmp_path):
    cfg = tmp_path / "dict.json"
    cfg.write_text(json.dumps({"kind": "topk", "n_latents": 32, "k": 2, "hook_name": "blocks.0.hook_resid_post"}))
    rc = main(
        [
            "compare",
            *map(str, variant_dirs),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "c"),
            "--train-tokens",
            "1024",
            "--batch-size",
            "256",
            "--eval-seqs",
            "8",
            "--autointerp-latents",
            "4",
            "--no-synthetic",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--browse",
            "random",
            "--browse-tokens",
            "500",
        ]
    )
    assert rc == 0
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    # --browse names one variant: its site holds only that model's dictionary
    assert results["browsers"]["dict"]["names"] == {"random": "random"}
    assert (tmp_path / "c" / results["browsers"]["dict"]["index"]).is_file()
    assert "editing" not in results  # no --concept, no editability
    assert json.loads((tmp_path / "cache" / "baseline" / "manifest.json").read_text())["complete"]
    assert results["settings"]["dictionaries"]["dict"]["d_in"] == 32
    assert (tmp_path / "c" / "report.html").is_file()


def test_compare_concept_flags_become_edit_settings(variant_dirs, capsys):
    """--concept/--edit-measure/--concept-texts reach run_comparison as EditSettings (the run itself is
    tested in test_compare_verdicts); --concept-control alone is one sentence before any work."""
    import argparse

    from saekit.commands import compare as compare_cmd
    from saekit.pipeline.editing import EditSettings

    parser = argparse.ArgumentParser()
    compare_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["compare", "a", "b", "--concept", "planted:small:in_bracket", "--edit-measure",
                              "steering_efficiency", "--concept-texts", "12"])  # fmt: skip
    assert compare_cmd._edit_settings(args) == EditSettings("planted:small:in_bracket", None, "steering_efficiency", max_texts=12)
    assert compare_cmd._edit_settings(parser.parse_args(["compare", "a", "b"])) is None
    headline = parser.parse_args(["compare", "a", "b", "--concept", "words:love", "--edit-measure", "units_to_half"])
    assert compare_cmd._edit_settings(headline).measure == "units_to_half"
    assert main(["compare", *map(str, variant_dirs), "--concept-control", "c.txt", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--concept-control needs --concept" in err


def test_compare_rejects_a_single_seed(variant_dirs, tmp_path):
    from saekit.errors import ConfigError

    with pytest.raises(ConfigError, match="at least two seeds"):
        run_comparison(variant_dirs, out_dir=tmp_path, seeds=(0,))


def test_report_escapes_token_text_and_shows_missing_values(comparison):
    import copy

    from saekit.report.html import render_html

    _, results = comparison
    r = copy.deepcopy(results)
    assert r["examples"], "the pipeline picked example latents"
    r["examples"][0]["contexts"][0]["text"][0] = "<script>alert(1)</script>"
    r["dictionaries"][0]["metrics"]["ce_loss_recovered"] = float("nan")
    html = render_html(r)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "–" in html


def test_eval_cli_on_an_activation_cache(comparison, variant_dirs, tmp_path, capsys):
    from saekit.activations import build_cache
    from saekit.models import load_model

    out, _ = comparison
    handle = load_model(variant_dirs[1])
    tokens = pack_tokens(load_corpus("validation")[:1], handle.tokenizer, 32, max_rows=8)
    cache = build_cache(handle, tokens, ["blocks.0.hook_mlp_out"], tmp_path / "cache", progress=False)
    dest = tmp_path / "m.json"
    assert main(["eval", str(out / "random" / "sae" / "seed0"), "--acts", str(cache), "--out", str(dest)]) == 0
    saved = json.loads(dest.read_text())
    assert saved["n_tokens"] == 8 * 31 and "ce_loss_recovered" not in saved  # BOS dropped, no model: no splice
    assert "FVU" in capsys.readouterr().out


def test_compare_trains_from_an_activation_cache_and_reuses_it(comparison, variant_dirs, tmp_path):
    """cache_dir: one cache per variant (every hook, transcoder pairs included), dictionaries trained from it."""
    _, in_memory = comparison
    cache_dir = tmp_path / "cache"
    results = _tiny_comparison(variant_dirs, tmp_path / "c", cache_dir=cache_dir, report=False)
    shard_times = {}
    for v in ("baseline", "random"):
        manifest = json.loads((cache_dir / v / "manifest.json").read_text())
        assert manifest["complete"] and manifest["shards"]
        assert set(manifest["hookpoints"]) == {"blocks.0.hook_mlp_out", "blocks.0.ln2.hook_normalized"}
        assert manifest["n_tokens"] == results["settings"]["train_tokens"]  # BOS dropped, as in memory
        shards = sorted((cache_dir / v / "shards").glob("*.safetensors"))
        assert len(shards) == len(manifest["shards"])
        shard_times.update({p: p.stat().st_mtime_ns for p in shards})
    assert results["settings"]["cache_dir"] == str(cache_dir)
    fvu_mem = {(r["variant"], r["dict"], r["seed"]): r["metrics"]["fvu"] for r in in_memory["dictionaries"]}
    assert len(results["dictionaries"]) == len(fvu_mem) == 8
    for r in results["dictionaries"]:
        m = r["metrics"]
        assert m["l0"] == pytest.approx(4.0) and math.isfinite(m["fvu"]) and math.isfinite(m["ce_loss_recovered"])
        ref = fvu_mem[(r["variant"], r["dict"], r["seed"])]
        assert abs(m["fvu"] - ref) < 0.1 * ref + 0.02, (r["variant"], r["dict"], r["seed"], m["fvu"], ref)
        assert r["autointerp"]["f1"]["n"] > 0
    assert load(tmp_path / "c" / "baseline" / "transcoder" / "seed1").W_dec.shape == (64, 32)
    assert set(results["feature_splitting"]) == {"baseline", "random"}

    # a rerun validates and reuses the caches: no shard is rewritten
    again = _tiny_comparison(variant_dirs, tmp_path / "c2", cache_dir=cache_dir, report=False, split_widths=False)
    assert {p: p.stat().st_mtime_ns for p in shard_times} == shard_times
    assert [r["metrics"]["fvu"] for r in again["dictionaries"]] == pytest.approx(
        [r["metrics"]["fvu"] for r in results["dictionaries"]]
    )  # same cache, same seeds: the same dictionaries


def test_variant_cache_is_rebuilt_when_stale_and_never_deletes_other_folders(variant_dirs, tmp_path):
    from saekit.errors import ConfigError
    from saekit.models import load_model
    from saekit.pipeline import build_variant_cache

    handle = load_model(variant_dirs[0])
    tokens = pack_tokens(load_corpus("validation")[:1], handle.tokenizer, 32, max_rows=8)
    hooks = ["blocks.0.hook_mlp_out"]
    path = build_variant_cache(handle, tokens, hooks, tmp_path / "v")
    assert json.loads((path / "manifest.json").read_text())["n_tokens"] == 8 * 31
    path = build_variant_cache(handle, tokens[:4], hooks, tmp_path / "v")  # other tokens: stale, rebuilt
    assert json.loads((path / "manifest.json").read_text())["n_tokens"] == 4 * 31
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        build_variant_cache(handle, tokens, hooks, tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_one_model_per_group_gets_no_interval_and_the_report_says_so(comparison):
    """Verdicts need ≥ 2 model seeds per group: with one, point estimates, no interval, a sentence why."""
    out, results = comparison
    for axis, rec in results["verdicts"]["random"]["sae"].items():
        assert rec["verdict"] == "not enough model seeds" and rec["ci95"] is None, (axis, rec)
        assert "at least 2 model seeds" in rec["note"]
    html = (out / "report.html").read_text()
    assert "not enough model seeds" in html and "at least 2 model seeds" in html


def _browser_hrefs(page: str) -> list[str]:
    import html

    return [html.unescape(h) for h in re.findall(r'href="([^"]*browser/[^"]*)"', page)]


def test_report_links_every_dictionary_to_its_feature_browser(comparison, tmp_path):
    """compare --browse: one site per dictionary config holding every model's first-seed dictionary;
    every browser link of the report (the list and each example latent) resolves to a site's index and
    names a dictionary and latent that site holds; a report written elsewhere links back into the run."""
    from urllib.parse import unquote

    from saekit.report import write_report
    from saekit.report.feature_site import MANIFEST

    out, results = comparison
    assert set(results["browsers"]) == {"sae", "transcoder"}
    html = (out / "report.html").read_text()
    hrefs = _browser_hrefs(html)
    example_links = re.findall(r'class="browse" href="([^"]+)"', html)
    assert len(example_links) == len(results["examples"]) > 0
    assert sum("&open=" in h for h in hrefs) == len(example_links)
    assert len(hrefs) >= 2 * (1 + 2) + len(example_links)  # per config: the site, then baseline and random
    for href in hrefs:
        page, _, frag = href.partition("#")
        index = out / page
        assert index.is_file() and index.name == "index.html"
        site = json.loads((index.parent / MANIFEST).read_text())
        assert site["dictionaries"] == ["baseline", "random"]
        params = dict(p.split("=", 1) for p in frag.split("&")) if frag else {}
        if "dict" in params:
            assert unquote(params["dict"]) in site["dictionaries"]
        if "open" in params:
            latent = int(params["open"])
            meta = (index.parent / "data" / unquote(params["dict"]) / "meta.js").read_text()
            assert 0 <= latent < json.loads(meta.split(",", 1)[1][:-3])["n_latents"]
    # the same results rendered into another folder: links walk back into the run folder
    other = write_report(out / "results.json", tmp_path / "elsewhere" / "report.html")
    for href in _browser_hrefs(other.read_text()):
        assert (other.parent / href.partition("#")[0]).resolve().is_file()


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_example_latent_link_opens_in_the_browser_and_follows_to_the_other_variant(comparison):
    from saekit.report.browser import _run

    out, results = comparison
    import html as html_lib

    link = re.findall(r'class="browse" href="([^"]+)"', (out / "report.html").read_text())[0]
    page, _, frag = html_lib.unescape(link).partition("#")
    ex = results["examples"][0]
    other = "random" if ex["variant"] == "baseline" else "baseline"
    url = f"{(out / page).resolve().as_uri()}#{frag}&follow={other}&check=1"
    dom = _run(["--virtual-time-budget=15000", "--dump-dom", url], timeout=180)
    m = re.search(r'<pre id="selfcheck"[^>]*>(.*?)</pre>', dom, re.S)
    r = json.loads(html_lib.unescape(m.group(1)))
    assert r["errors"] == [] and r["chunks"]["failed"] == []
    assert r["panel"]["dict"] == ex["variant"] and r["panel"]["open"] == ex["latent"]
    assert r["after"]["dict"] == other and r["follow_href"].startswith(f"#dict={other}&open=")


def test_browse_names_models_or_variants_and_refuses_unknown_ones():
    """What saekit demo passes (variant names) picks each variant's first model seed; a name that is
    neither a model nor a variant of the run is one sentence, before any training."""
    from saekit.errors import ConfigError
    from saekit.pipeline.browsers import browsed_models
    from saekit.pipeline.demo import DEMO_BROWSE

    handles = dict.fromkeys(["baseline-s0", "baseline-s1", "act_l1-s0", "act_l1-s1", "random-s0"])
    groups = {"baseline": ["baseline-s0", "baseline-s1"], "act_l1": ["act_l1-s0", "act_l1-s1"], "random": ["random-s0"]}
    assert browsed_models(handles, groups, DEMO_BROWSE) == ["baseline-s0", "act_l1-s0"]
    assert browsed_models(handles, groups, ["act_l1-s1", "act_l1"]) == ["act_l1-s1", "act_l1-s0"]
    assert browsed_models(handles, groups, True) == list(handles) and browsed_models(handles, groups, False) == []
    with pytest.raises(ConfigError, match="browse names 'pruned', which is no model or variant of this run"):
        browsed_models(handles, groups, ["pruned"])


def test_report_shows_the_implied_prior_of_each_dictionary(comparison):
    out, results = comparison
    fits = [r["priors"] for r in results["dictionaries"] if r["variant"] == "baseline" and r["dict"] == "sae"]
    assert len(fits) == 2 and all(f and f["fitted"] > 0 for f in fits)
    for f in fits:
        assert sum(f["share"].values()) == pytest.approx(1.0)
        assert f["share"][f["dominant"]] == max(f["share"].values())
    html = (out / "report.html").read_text()
    section = html[html.index('id="priors"') : html.index("Offline auto-interpretation")]
    assert "data:image/png;base64," in section and "implied penalty" in section
    mean_laplace = np.mean([f["share"]["laplace"] for f in fits])
    row = re.search(r"<td class=\"l\">baseline</td><td class=\"l\">sae</td>(.*?)</tr>", section).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    assert cells[1] == f"{mean_laplace:.2f}"  # the table shows the mean share over seeds
