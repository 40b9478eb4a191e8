"""`saekit train` from the command line: a working run, a TOML sweep, and bad input (exit ≠ 0)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from saekit.cli import main
from saekit.commands.train import parse_count
from saekit.training.spec import expand_sweep


@pytest.fixture()
def acts(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "acts.safetensors"
    save_file({"x": torch.randn(2000, 16)}, str(path))
    return path


def run_cli(capsys, *args):
    code = main(["train", *map(str, args)])
    return code, capsys.readouterr().err.strip()


def test_cli_trains_and_saves_a_loadable_dictionary(acts, tmp_path, capsys):
    out = tmp_path / "sae"
    code, _ = run_cli(
        capsys,
        "--activations",
        acts,
        "--kind",
        "topk",
        "--k",
        4,
        "--n-latents",
        64,
        "--tokens",
        "6.4k",
        "--batch-size",
        64,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert code == 0
    import saekit

    sae = saekit.load(out)
    assert sae.cfg.k == 4 and sae.cfg.n_latents == 64
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 100


def test_cli_toml_sweep(acts, tmp_path, capsys):
    conf = tmp_path / "sweep.toml"
    conf.write_text(
        '[train]\nbatch_size = 64\ntotal_tokens = 640\ndevice = "cpu"\n'
        '[[dictionary]]\nkind = "topk"\nn_latents = 32\n[sweep]\nk = [2, 4]\n'
    )
    code, err = run_cli(capsys, "--activations", acts, "--config", conf, "--out", tmp_path / "sw")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "sw").iterdir() if p.is_dir()) == ["00_topk_n32_k2", "01_topk_n32_k4"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "100", "--n-latents", "64"], "k must be an integer in 1..n_latents (64), got 100."),
        (
            ["--kind", "gatd", "--n-latents", "64"],
            "kind 'gatd' is not known; expected one of relu, topk, batchtopk, jumprelu, matryoshka, abstopk, gated.",
        ),
        (["--k", "4", "--n-latents", "64", "--lr", "0"], "lr must be > 0, got 0.0."),
        (["--k", "4", "--n-latents", "64", "--lr=-1e-3"], "lr must be > 0, got -0.001."),
        (
            ["--k", "4", "--n-latents", "64", "--tokens", "lots"],
            "--tokens must be a count like 200000, 200k or 1M",
        ),
    ],
)
def test_cli_bad_input_one_sentence_exit_2(acts, tmp_path, capsys, args, message):
    code, err = run_cli(capsys, "--activations", acts, "--out", tmp_path / "o", "--tokens", "640", *args)
    assert code == 2
    assert err.startswith("saekit train: error: ") and message in err
    assert len(err.splitlines()) == 1


def test_cli_width_mismatch_and_nan(acts, tmp_path, capsys):
    conf = tmp_path / "c.toml"
    conf.write_text('[[dictionary]]\nkind = "topk"\nd_in = 32\nn_latents = 64\nk = 4\n')
    code, err = run_cli(capsys, "--activations", acts, "--config", conf, "--tokens", 640, "--out", tmp_path / "o1")
    assert code == 2 and "d_in is 32 but the activations have width 16; set d_in=16." in err

    x = torch.randn(2000, 16)
    x[5 * 64 + 1] = float("inf")
    bad = tmp_path / "bad.safetensors"
    save_file({"x": x}, str(bad))
    # the source shuffles rows, so find the step whose batch holds the bad row
    from saekit.training import TensorSource

    src = TensorSource(x, seed=0)
    step = next(s for s in range(100) if not torch.isfinite(src.next_batch(64)[0]).all())
    code, err = run_cli(
        capsys,
        "--activations",
        bad,
        "--k",
        4,
        "--n-latents",
        64,
        "--tokens",
        6400,
        "--batch-size",
        64,
        "--checkpoint-every",
        1,
        "--out",
        tmp_path / "o2",
        "--device",
        "cpu",
    )
    assert code == 2 and len(err.splitlines()) == 1
    assert f"the batch at step {step} has NaN or inf values in 1 row(s) of the inputs" in err
    assert "last good checkpoint" in err


def test_parse_count_and_expand_sweep():
    assert parse_count("50M") == 50_000_000 and parse_count("2.5k") == 2500 and parse_count("123") == 123
    out = expand_sweep([{"kind": "topk"}], {"k": [1, 2], "n_latents": [8, 16]})
    assert len(out) == 4 and {"kind": "topk", "k": 2, "n_latents": 16} in out


def test_cli_streams_from_a_saekit_model_folder(tmp_path, capsys):
    from saekit.config import ModelConfig
    from saekit.data import load_corpus, train_tokenizer
    from saekit.models import ModelHandle
    from saekit.models.build import build_model, tl_config_dict
    from saekit.models.store import save_model_folder

    mcfg = ModelConfig(n_layers=1, d_model=32, n_heads=4, d_mlp=128, n_ctx=32, vocab_size=512)
    tl_args = tl_config_dict(mcfg)
    tok = train_tokenizer(load_corpus("train")[:2], vocab_size=512)
    model = build_model(tl_args)
    folder = tmp_path / "model"
    save_model_folder(
        ModelHandle(model, tok, "transformer_lens", "tiny", "baseline", folder),
        tl_args,
        {"name": "tiny", "variant": "baseline"},
    )
    out = tmp_path / "sae"
    code, err = run_cli(
        capsys,
        "--model",
        folder,
        "--hookpoint",
        "blocks.0.hook_resid_post",
        "--kind",
        "topk",
        "--k",
        4,
        "--n-latents",
        64,
        "--tokens",
        2560,
        "--batch-size",
        256,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert code == 0, err
    import saekit

    sae = saekit.load(out)
    assert sae.cfg.d_in == 32 and sae.cfg.hook_name == "blocks.0.hook_resid_post"
