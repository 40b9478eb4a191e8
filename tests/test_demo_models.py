"""The demo's models: every variant of every model seed, the seeds trained at once in worker processes,
each folder holding the model of its own seed (training that seed again in this process reuses them). (On the planted language,
whose tokens take 4 s to make; the built-in corpus takes 10-20 s to tokenise in each worker.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

from saekit.config import ModelConfig
from saekit.pipeline.demo import DEMO_MODEL_SEEDS, DEMO_VARIANTS, PLANTED_SPEC, _train_seed, train_demo_models

TINY = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=16, steps=2, batch_size=4, eval_tokens=256,
                   vocab_size=532, device="cpu")  # fmt: skip


def test_every_variant_and_seed_in_its_own_folder_and_reused(tmp_path, capsys):
    paths = train_demo_models(tmp_path, TINY, planted=PLANTED_SPEC)
    assert [(p.parent.name, p.name) for p in paths] == [(f"seed{s}", v) for s in DEMO_MODEL_SEEDS for v in DEMO_VARIANTS]
    for p in paths:
        info = json.loads((p / "saekit_model.json").read_text())
        assert (info["variant"], f"seed{info['seed']}") == (p.name, p.parent.name)
    weights = {p: os.stat(p / "model.safetensors").st_mtime_ns for p in paths}
    assert "random seed 1: validation loss" in capsys.readouterr().out
    again = _train_seed(tmp_path / "seed1", TINY.replace(seed=1), False, PLANTED_SPEC, threads=0)  # in this process
    assert [Path(p) for _, p, _ in again] == paths[len(DEMO_VARIANTS):]
    assert {p: os.stat(p / "model.safetensors").st_mtime_ns for p in paths} == weights  # reused, not retrained


def test_keep_freed_memory_takes_effect_on_glibc():
    """In a child process: the setting is process-wide and would outlive the test."""
    import platform

    code = "from saekit.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
