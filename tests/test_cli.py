"""The `saekit` command as a user runs it: a real subprocess."""

import subprocess
import sys

from tiny_models import save_tiny_model_folder

from saekit.cli import COMMANDS


def _saekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "saekit", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_verb():
    out = _saekit("--help")
    assert out.returncode == 0
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ") and line.split()}
    for verb in COMMANDS:
        assert verb.replace("_", "-") in listed, verb  # argparse puts a long verb's help on the next line


def test_unknown_verb_fails_with_usage():
    out = _saekit("frobnicate")
    assert out.returncode == 2 and "invalid choice: 'frobnicate'" in out.stderr


def test_cache_train_eval_pipeline_through_the_cli(tmp_path, capsys):
    """The README's command-line path: cache → train on the cache → eval spliced into the model."""
    import json

    from saekit.cli import main
    model_dir = save_tiny_model_folder(tmp_path / "model", n_layers=1, d_model=32, d_head=8, d_mlp=128)
    hook = "blocks.0.hook_resid_post"
    assert main(["cache", "--model", str(model_dir), "--hookpoints", hook, "--tokens", "4k", "--out", str(tmp_path / "cache")]) == 0
    sae = tmp_path / "sae"
    train_args = ["--kind", "topk", "--k", "4", "--n-latents", "64", "--tokens", "4096", "--batch-size", "256"]
    assert main(["train", "--cache", str(tmp_path / "cache"), *train_args, "--out", str(sae), "--device", "cpu"]) == 0
    cfg = json.loads((sae / "cfg.json").read_text())
    assert cfg["hook_name"] == hook and cfg["model_name"] == str(model_dir)  # recorded from the cache manifest
    assert main(["eval", str(sae), "--model", str(model_dir)]) == 0, capsys.readouterr().err
    assert "CE loss recovered" in capsys.readouterr().out
