"""Exact resume through the CLI: SIGKILL a real `saekit train` mid-run, resume, compare bytes."""

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file, save_file
from synthetic import sparse_feature_data

from saekit.training import load_checkpoint

STEPS = 240
BATCH = 64


def saekit_cmd(*args):
    return [sys.executable, "-m", "saekit", "train", *args]


def env():
    e = dict(os.environ)
    # the same thread count in every run: float sums must happen in the same order
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SAEKIT_NO_PROGRESS="1")
    return e


def write_inputs(tmp_path):
    X, _ = sparse_feature_data(n=6000, d=16, n_features=64, mean_active=3.0, seed=2)
    acts = tmp_path / "acts.safetensors"
    save_file({"x": X}, str(acts))
    conf = tmp_path / "sweep.toml"
    # AuxK must matter (short dead window) and a relu resamples, so those states are resumed too.
    conf.write_text(
        f"""
[train]
batch_size = {BATCH}
total_tokens = {BATCH * STEPS}
lr = 0.003
dead_tokens = 256
resample_dead_every = 50
checkpoint_every = 20
log_every = 5
device = "cpu"

[[dictionary]]
kind = "topk"
n_latents = 96
k = 3

[[dictionary]]
kind = "relu"
n_latents = 96
sparsity_coef = 0.5
""",
        encoding="utf-8",
    )
    return acts, conf


def last_logged_step(metrics):
    if not metrics.exists():
        return 0
    steps = [0]
    for line in metrics.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps)


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    acts, conf = write_inputs(tmp_path)
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["--activations", str(acts), "--config", str(conf)]
    r = subprocess.run(saekit_cmd(*args, "--out", str(full)), env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr

    proc = subprocess.Popen(saekit_cmd(*args, "--out", str(part)), env=env(), stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        # kill once a checkpoint past the middle exists (checkpoints every 20 steps)
        while time.time() < deadline and proc.poll() is None:
            if last_logged_step(part / "metrics.jsonl") >= STEPS // 2 and (part / "checkpoint.pt").exists():
                break
            time.sleep(0.01)
        assert proc.poll() is None, "training finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(part)["step"]
    assert 0 < killed_at < STEPS
    assert not (part / "00_topk_n96_k3" / "sae_weights.safetensors").exists()

    r = subprocess.run(
        saekit_cmd("--resume", "--out", str(part)), env=env(), capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    assert f"resuming at step {killed_at} of {STEPS}" in r.stderr
    for name in ("00_topk_n96_k3", "01_relu_n96_l0.5"):
        a = load_file(str(full / name / "sae_weights.safetensors"))
        b = load_file(str(part / name / "sae_weights.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    ca, cb = load_checkpoint(full), load_checkpoint(part)
    for ra, rb in zip(ca["runs"], cb["runs"]):
        assert torch.equal(ra["tracker"]["tokens_since_fired"], rb["tracker"]["tokens_since_fired"])
        for k in ra["model"]:
            assert torch.equal(ra["model"][k], rb["model"][k])
