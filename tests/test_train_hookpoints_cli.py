"""`saekit train --model DIR --hookpoints ...`: one dictionary per hookpoint (and a transcoder
pair) from one model forward. In one process each equals that hookpoint trained alone; two
real gloo ranks started as torchrun starts them give the same weights; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import save_tiny_model_folder

from saekit.cli import main

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.ln2.hook_normalized,blocks.0.hook_mlp_out"]
NAMES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.ln2.hook_normalized__blocks.0.hook_mlp_out"]
BATCH, STEPS = 128, 8
ARGS = ["--kind", "topk", "--k", "4", "--n-latents", "64", "--tokens", str(BATCH * STEPS)]
ARGS += ["--batch-size", str(BATCH), "--seed", "1", "--device", "cpu", "--checkpoint-every", "4"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def one_process(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hookpoints") / "one"
    assert main(["train", "--model", str(model_dir), "--hookpoints", *HOOKS, *ARGS, "--out", str(out)]) == 0
    return out


def test_each_hookpoint_equals_training_it_alone(model_dir, one_process):
    from saekit.activations.sources import live_tokens
    from saekit.config import DictionaryConfig, TrainConfig
    from saekit.io import load as saekit_load
    from saekit.models import load_model
    from saekit.parallel.hookpoints import HookpointSource, LiveHookSource
    from saekit.training import Trainer

    handle = load_model(model_dir)
    tcfg = TrainConfig(batch_size=BATCH, total_tokens=BATCH * STEPS, seed=1, device="cpu")
    tokens, _ = live_tokens({"model": str(model_dir)}, handle, tcfg.total_tokens)
    for hook, name in zip(HOOKS, NAMES, strict=True):
        keys = hook.split(",")
        pair = len(keys) == 2
        cfg = DictionaryConfig(kind="topk", k=4, n_latents=64, d_in=64, d_out=64, transcoder=pair, hook_name=keys[0])
        alone = HookpointSource(LiveHookSource(handle, tokens, keys, seed=1), keys[0] if not pair else tuple(keys))
        # files hold weights with the normalisation folded in (every kind is normalised by default)
        ref = Trainer([cfg], alone, tcfg, progress=False).fit()[0].fold_act_scale()
        got = load_file(str(one_process / name / "sae_weights.safetensors"))
        assert {"W_enc", "b_enc", "W_dec", "b_dec"} <= got.keys() & ref.state_dict().keys()
        for key, value in ref.state_dict().items():
            if key in got:
                assert torch.equal(got[key], value), f"{name}.{key}"
        saved = json.loads((one_process / name / "cfg.json").read_text())
        assert saved["hook_name"] == keys[0] and saved["model_name"] == str(model_dir)
        assert saekit_load(one_process / name).cfg.hook_name_out == (keys[1] if pair else "")
        assert (one_process / name / "checkpoint.pt").is_file()
    assert json.loads((one_process / "source.json").read_text())["source"]["hookpoints"] == HOOKS


def test_two_torchrun_ranks_equal_one_process(model_dir, one_process, tmp_path):
    from test_distributed import finish, free_port

    out, port = tmp_path / "two", free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port), OMP_NUM_THREADS="1", SAEKIT_NO_PROGRESS="1",
        )  # fmt: skip
        cmd = [sys.executable, "-m", "saekit", "train", "--model", str(model_dir), "--hookpoints", *HOOKS, *ARGS]
        procs.append(subprocess.Popen([*cmd, "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = finish(procs, timeout=180)
    for rc, text in results:
        assert rc == 0, text
    # job i on rank i % 2: rank 0 saved jobs 0 and 2, rank 1 job 1
    assert sorted(line.split("/")[-1] for line in results[0][1].splitlines() if line.startswith("saved")) == [NAMES[0], NAMES[2]]
    assert [line.split("/")[-1] for line in results[1][1].splitlines() if line.startswith("saved")] == [NAMES[1]]
    for name in NAMES:
        one = load_file(str(one_process / name / "sae_weights.safetensors"))
        two = load_file(str(out / name / "sae_weights.safetensors"))
        assert one.keys() == two.keys()
        for key in one:
            assert torch.equal(one[key], two[key]), f"{name}.{key}"


def test_resume_of_a_finished_run_keeps_its_weights(model_dir, one_process, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(one_process, out)
    before = {n: load_file(str(out / n / "sae_weights.safetensors")) for n in NAMES}
    assert main(["train", "--resume", "--out", str(out)]) == 0
    assert "is a finished run" in capsys.readouterr().err  # issue 13: a finished run is left alone
    for name in NAMES:
        after = load_file(str(out / name / "sae_weights.safetensors"))
        assert all(torch.equal(before[name][k], after[k]) for k in after)
    # a second fresh run into the same folder is refused instead of overwriting it
    assert main(["train", "--model", str(model_dir), "--hookpoints", *HOOKS, *ARGS, "--out", str(out)]) == 2
    assert "already holds a training run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hookpoints", "blocks.0.hook_resid_post", "--hookpoint", "blocks.1.hook_resid_post"], "not both"),
        (["--hookpoints", "a,b,c"], "entries are H or IN,OUT"),
        (["--hookpoints", "blocks.0.hook_resid_post", "blocks.0.hook_resid_post"], "lists a hookpoint twice"),
        (["--hookpoints", "blocks.0.hook_resid_psot"], "is not a hook of this transformer-lens model"),
    ],
)
def test_bad_input_is_one_line(model_dir, tmp_path, capsys, extra, message):
    assert main(["train", "--model", str(model_dir), *extra, *ARGS, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_hookpoints_need_a_model(tmp_path, capsys):
    assert main(["train", "--cache", str(tmp_path), "--hookpoints", "h", *ARGS, "--out", str(tmp_path / "x")]) == 2
    assert "give --model DIR, not --cache" in capsys.readouterr().err
