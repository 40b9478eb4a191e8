"""Transcoders on a real (tiny, random-weight) transformer-lens model: MLP input -> MLP output,
trained from a live ActivationStream and from a disk ActivationCache."""

import pytest
import torch
from tiny_models import tiny_hooked_transformer

from saekit import DictionaryConfig, TrainConfig, train
from saekit.activations import ActivationCache, ActivationStream, build_cache

HOOKS = ["blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"]


@pytest.fixture(scope="module")
def model():
    return tiny_hooked_transformer()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(1, 512, (160, 32), generator=torch.Generator().manual_seed(0))


def fvu(sae, x, y):
    with torch.no_grad():
        return float((sae(x) - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


def test_skip_transcoder_at_least_as_good_as_plain_on_mlp(model, tokens):
    held = ActivationStream(model, tokens[-32:], HOOKS, seed=99, prefetch=False)
    x_val, y_val = held.next_batch(2048)
    held.close()
    tcfg = TrainConfig(batch_size=256, total_tokens=256 * 120, lr=3e-3, lr_warmup_steps=10, device="cpu")
    results = {}
    for skip in (False, True):
        stream = ActivationStream(model, tokens[:-32], HOOKS, seed=0, prefetch=False)
        cfg = DictionaryConfig(kind="topk", d_in=64, n_latents=256, k=8, d_out=64, transcoder=True, skip=skip)
        sae = train(cfg, stream, tcfg, progress=False)
        stream.close()
        results[skip] = fvu(sae, x_val, y_val)
    # better than predicting the mean (FVU of the mean = 1), and the skip path only adds
    assert results[False] < 0.8, results
    assert results[True] <= results[False] + 0.01, results


def test_train_from_cache_and_resume_reader_state(model, tokens, tmp_path):
    build_cache(model, tokens[:64], HOOKS, tmp_path / "cache", n_tokens=1800, shard_tokens=512)
    cfg = DictionaryConfig(kind="batchtopk", d_in=64, n_latents=128, k=4, d_out=64, transcoder=True)
    tcfg = TrainConfig(
        batch_size=128, total_tokens=128 * 30, lr=3e-3, device="cpu", checkpoint_every=10, out_dir=str(tmp_path / "a")
    )
    full = train(cfg, ActivationCache(tmp_path / "cache", HOOKS, seed=0, prefetch=False), tcfg, progress=False)
    from saekit.training import Trainer

    part = Trainer(
        cfg,
        ActivationCache(tmp_path / "cache", HOOKS, seed=0, prefetch=False),
        tcfg.replace(out_dir=str(tmp_path / "b")),
        progress=False,
    )
    for _ in range(13):
        part.step(*part.next_batch())
    part.save_checkpoint()
    resumed = train(
        cfg,
        ActivationCache(tmp_path / "cache", HOOKS, seed=0, prefetch=False),
        tcfg.replace(out_dir=str(tmp_path / "b")),
        resume=True,
        progress=False,
    )
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_normalized_cache_scales_are_carried_into_the_dictionary(model, tokens, tmp_path):
    build_cache(model, tokens[:64], HOOKS, tmp_path / "cache", n_tokens=1800, shard_tokens=512)
    raw = ActivationCache(tmp_path / "cache", HOOKS, seed=1, prefetch=False)
    x, y = raw.next_batch(1024)
    s_in, s_out = raw.norm_scale
    assert abs(s_in / s_out - 1) > 0.05  # the two sides really have different scales
    cache = ActivationCache(tmp_path / "cache", HOOKS, seed=0, prefetch=False, normalize=True)
    cfg = DictionaryConfig(kind="topk", d_in=64, n_latents=128, k=8, d_out=64, transcoder=True, skip=True)
    tcfg = TrainConfig(batch_size=128, total_tokens=128 * 60, lr=3e-3, device="cpu")
    sae = train(cfg, cache, tcfg, progress=False)
    assert float(sae.act_scale) == pytest.approx(s_in)
    # works on raw activations: predicts raw y from raw x
    assert fvu(sae, x, y) < 0.8
    # the output scale is right: rescaling the prediction by the two sides' ratio only hurts
    with torch.no_grad():
        pred = sae(x)
    r = s_out / s_in

    def fvu_of(p):
        return float((p - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())

    assert fvu_of(pred) < fvu_of(pred * r) and fvu_of(pred) < fvu_of(pred / r)


def test_cli_transcoder_keeps_its_output_hook_through_eval(tmp_path, capsys):
    """`saekit train --hookpoint X --hookpoint-out Y` records Y (config, cfg.json) and `saekit eval`
    splices at Y, not at the guess from X (X is an MLP input, so the guess would be hook_mlp_out)."""
    import json

    from tiny_models import save_tiny_model_folder

    import saekit
    from saekit.cli import main

    model_dir = save_tiny_model_folder(tmp_path / "model", n_layers=1, d_model=32, d_head=8, d_mlp=128)
    x_hook, y_hook = "blocks.0.ln2.hook_normalized", "blocks.0.hook_resid_post"
    out = tmp_path / "tc"
    args = ["train", "--model", str(model_dir), "--hookpoint", x_hook, "--hookpoint-out", y_hook, "--kind", "topk",
            "--k", "8", "--n-latents", "64", "--tokens", "8192", "--batch-size", "256", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    sae = saekit.load(out)
    assert sae.cfg.transcoder and (sae.cfg.hook_name, sae.cfg.hook_name_out) == (x_hook, y_hook)
    assert json.loads((out / "cfg.json").read_text())["metadata"]["hook_name_out"] == y_hook
    assert main(["eval", str(out), "--model", str(model_dir), "--seqs", "16", "--splice-seqs", "4"]) == 0
    got = json.loads((out / "eval.json").read_text())
    assert (got["hook_name"], got["hook_name_out"]) == (x_hook, y_hook)
    # measured against Y the transcoder explains most of the variance; against the guess it does not
    guess = "blocks.0.hook_mlp_out"
    wrong = tmp_path / "wrong.json"
    assert main(["eval", str(out), "--model", str(model_dir), "--hook", f"{x_hook}->{guess}", "--seqs", "16",
                 "--splice-seqs", "4", "--out", str(wrong)]) == 0
    bad = json.loads(wrong.read_text())
    assert bad["hook_name_out"] == guess
    assert got["fvu"] < 0.5 < bad["fvu"], (got["fvu"], bad["fvu"])
