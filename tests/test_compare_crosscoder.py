"""`saekit compare --crosscoder`: baseline-vs-variant crosscoders inside a comparison, on tiny real models."""

import json

import pytest
import torch

import saekit
from saekit.cli import main
from saekit.config import ModelConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.models import train_model

HOOK = "blocks.0.hook_mlp_out"


@pytest.fixture(scope="module")
def variant_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[:1], tok, 32, max_rows=64)
    val = pack_tokens(load_corpus("validation")[:1], tok, 32, max_rows=8)
    base = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=64, n_ctx=32, steps=60, batch_size=8, device="cpu")
    for v in ("baseline", "random"):
        train_model(base.replace(variant=v), root / v, tokenizer=tok, data=(train, val), progress=False)
    return [root / "baseline", root / "random"]


def test_compare_crosscoder_adds_a_pair_per_variant_with_intervals_and_a_linked_page(variant_dirs, tmp_path):
    cfg = tmp_path / "dicts.json"
    cfg.write_text(json.dumps({"sae": {"kind": "topk", "n_latents": 32, "k": 4, "hook_name": HOOK}}))
    out = tmp_path / "cmp"
    args = ["compare", *map(str, variant_dirs), "--config", str(cfg), "--seeds", "0", "1", "--train-tokens", "8k",
            "--batch-size", "128", "--lr", "3e-3", "--eval-seqs", "8", "--autointerp-latents", "4", "--no-synthetic",
            "--crosscoder", "--crosscoder-k", "2", "--crosscoder-n-latents", "24", "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["crosscoders"]) == {"random"}  # the baseline against every other variant
    rec = results["crosscoders"]["random"]
    assert rec["sharing"]["names"] == ["baseline", "random"] and rec["seeds"] == [0, 1]
    assert rec["dictionary"]["hook_name"] == HOOK and rec["dictionary"]["n_latents"] == 24
    for cls, stat in rec["over_seeds"]["counts"].items():
        assert len(stat["values"]) == 2 and stat["mean"] == pytest.approx(sum(stat["values"]) / 2), cls
    assert all(sum(r["counts"].values()) == 24 for r in rec["per_seed"].values())
    # analysed on the comparison's own held-out tokens, every non-BOS position
    assert rec["n_eval_tokens"] == results["settings"]["eval_tokens"]
    page = out / rec["page"]
    assert page.is_file() and "baseline vs random" in page.read_text()
    html = (out / "report.html").read_text()
    assert 'id="crosscoders"' in html and f'href="{rec["page"]}"' in html
    ccs = [saekit.load(str(page.parent / f"crosscoder_seed{s}")) for s in (0, 1)]
    assert ccs[0].cfg.source_names == ("baseline", "random")
    assert not torch.equal(ccs[0].W_dec, ccs[1].W_dec)
