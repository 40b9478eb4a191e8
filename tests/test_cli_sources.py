"""Where a command's text and model come from, and what its errors show (issue 13, the command line):
`saekit compare --dataset/--split/--text-column`, models by Hub id through the Hugging Face
module-path route, and a subcommand's own usage on its errors."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import save_tiny_model_folder

from saekit.cli import main

WORDS = ["zebra", "quartz", "violin", "harbour", "mosaic"]  # a tiny vocabulary, far from the built-in corpus


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def word_docs(tmp_path_factory):
    """A JSONL dataset (text under "content") of documents made of WORDS only, and its documents."""
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(400)]
    path = tmp_path_factory.mktemp("data") / "words.jsonl"
    path.write_text("".join(json.dumps({"content": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path, docs


def _ids_of(docs, tok) -> set[int]:
    ids = {tok.bos_token_id, tok.eos_token_id}
    for d in docs:
        ids.update(tok(d, add_special_tokens=False)["input_ids"])
    return ids


# ------------------------------------------------------------------------ compare --dataset
def test_shared_tokens_come_from_the_dataset_first_rows_train_next_rows_held_out(model_folder, word_docs):
    from saekit.data import load_corpus, pack_tokens
    from saekit.models import load_model
    from saekit.pipeline.variants import shared_tokens

    path, docs = word_docs
    handle = load_model(model_folder)
    tokens = shared_tokens(handle, 620, 8, 6, dataset=str(path), text_column="content")
    packed = pack_tokens(docs, handle.tokenizer, 32, max_rows=26)  # 620 tokens = 20 rows of 31, then 6 held out
    assert torch.equal(tokens.train, packed[:20]) and torch.equal(tokens.eval, packed[20:26])
    assert tokens.source == {"dataset": str(path), "split": "train", "text_column": "content",
                             "held_out": "the 6 contexts after the training contexts"}  # fmt: skip
    builtin = shared_tokens(handle, 620, 8, 6)  # no dataset: the corpus's train and validation splits
    assert torch.equal(builtin.train, pack_tokens(load_corpus("train"), handle.tokenizer, 32, max_rows=20))
    assert torch.equal(builtin.eval, pack_tokens(load_corpus("validation"), handle.tokenizer, 32, max_rows=6))
    small = shared_tokens(handle, 10**6, 8, 6, dataset=str(path), text_column="content")  # the dataset runs out
    assert len(small.eval) == 6 and len(small.train) + 6 == len(pack_tokens(docs, handle.tokenizer, 32))


def test_compare_cli_trains_and_holds_out_text_of_the_dataset(model_folder, word_docs, tmp_path, capsys):
    path, docs = word_docs
    cfg = tmp_path / "dict.json"
    cfg.write_text(json.dumps({"kind": "topk", "n_latents": 64, "k": 4, "hook_name": "blocks.1.hook_resid_post"}))
    args = ["compare", model_folder, "--config", cfg, "--out", tmp_path / "c", "--train-tokens", "1024",
            "--batch-size", "128", "--eval-seqs", "8", "--autointerp-latents", "8", "--no-synthetic",
            "--cache-dir", tmp_path / "cache", "--dataset", path]  # fmt: skip
    assert main([str(a) for a in args]) == 2  # the column is "content", not "text": the dataset is what is read
    assert "no column 'text'" in capsys.readouterr().err
    assert main([str(a) for a in [*args, "--text-column", "content"]]) == 0
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["settings"]["data"]["dataset"] == str(path)
    assert results["settings"]["data"]["text_column"] == "content"
    from saekit.models import load_model

    tok = load_model(model_folder).tokenizer
    allowed = _ids_of(docs, tok)
    from saekit.data import load_corpus

    assert not _ids_of(load_corpus("validation")[:3], tok) <= allowed  # the check below can tell the texts apart
    manifest = json.loads((tmp_path / "cache" / "baseline" / "manifest.json").read_text())
    trained = set()
    for shard in manifest["shards"]:
        trained.update(load_file(tmp_path / "cache" / "baseline" / shard["file"])["token_ids"].tolist())
    assert trained and trained <= allowed  # every training activation is of a dataset token
    pieces = {tok.decode([i]) for i in allowed}
    shown = [p for ex in results["examples"] for c in ex["contexts"] for p in c["text"]]
    assert shown and set(shown) <= pieces  # held-out contexts shown in the report are dataset text


# ------------------------------------------------------------------ a subcommand's own usage
@pytest.mark.parametrize(
    "argv, usage, message",
    [
        (["train", "--cache", "c", "--out", "o", "--bogus"], "usage: saekit train ", "unrecognized arguments: --bogus"),
        (["cache", "--model", "m", "--out", "o", "--tokens", "1.5"], "usage: saekit cache ",
         "--tokens must be a whole number of items"),
        (["model", "train", "--variant", "baseline", "--out", "o", "--nope", "1"], "usage: saekit model train ",
         "unrecognized arguments: --nope 1"),
        (["eval", "d", "--seqs", "many"], "usage: saekit eval ", "argument --seqs: invalid int value: 'many'"),
        # a flag parser raising saekit's ConfigError keeps its sentence (argparse would say "invalid _floats value")
        (["edit", "steer", "--model", "m", "--concept", "c", "--out", "o", "--alphas", "x,y"], "usage: saekit edit ",
         "--alphas must be comma-separated numbers"),
        (["compare", "m1", "--bogus"], "usage: saekit compare ", "unrecognized arguments: --bogus"),
    ],
)  # fmt: skip
def test_errors_of_a_subcommand_show_its_usage(argv, usage, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    prog = usage.removeprefix("usage: ").strip()
    assert stop.value.code == 2 and err.startswith(usage) and f"{prog}: error: " in err and message in err, err
    assert "Traceback" not in err and "COMMAND ..." not in err  # not the top-level usage


def test_a_nested_verb_names_itself_in_its_errors(tmp_path, capsys):
    code = main(["model", "train", "--variant", "baseline", "--dataset", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"saekit model train: error: dataset file {tmp_path / 'x.jsonl'} does not exist."


# ------------------------------------------------------------------------ models by Hub id
def _cached_hub_model(cache, repo: str):
    """``repo`` written into a Hugging Face Hub cache folder the way a download leaves it (offline use)."""
    from transformers import GPT2Config, GPT2Model

    from saekit.data import default_tokenizer

    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    tok = default_tokenizer()
    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32, vocab_size=len(tok))).save_pretrained(snapshot)
    tok.save_pretrained(snapshot)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)


def test_a_hub_id_transformer_lens_does_not_know_is_a_plain_hf_model_with_module_paths(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    _cached_hub_model(tmp_path / "hub", "tinyorg/tiny-gpt2")
    out = tmp_path / "c"
    code = main(["cache", "--model", "tinyorg/tiny-gpt2", "--hookpoints", "h.0.mlp", "--tokens", "200",
                 "--out", str(out), "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_tokens"] == 200 and manifest["hookpoints"]["h.0.mlp"]["d"] == 16
    assert manifest["n_ctx"] == 32  # the model's own context (config.n_positions), not 128
    code = main(["model", "hookpoints", "someorg/not-cached"])  # offline and not in the cache
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("saekit model hookpoints: error: model 'someorg/not-cached' is not a transformer-lens model name")
    assert "local Hugging Face cache" in err and "hf download someorg/not-cached" in err


def test_negative_checkpoint_every_is_one_sentence_and_demo_train_tokens_take_suffixes(tmp_path, capsys):
    from saekit.cli import build_parser

    code = main(["train", "--activations", str(tmp_path / "a.safetensors"), "--checkpoint-every", "-5",
                 "--out", str(tmp_path / "r")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "checkpoint_every must be a positive number" in err
    assert "got -5" in err and not (tmp_path / "r").exists()
    assert build_parser().parse_args(["demo", "--train-tokens", "10k"]).train_tokens == 10_000


def test_decoder_rate_flags_reach_the_dictionary_and_a_negative_one_is_one_sentence(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"x": torch.randn(512, 8)}, str(tmp_path / "a.safetensors"))
    args = ["train", "--activations", str(tmp_path / "a.safetensors"), "--kind", "topk", "--k", "2", "--n-latents", "16",
            "--tokens", "512", "--batch-size", "128", "--device", "cpu"]  # fmt: skip
    flags = ["--w-dec-lr-scale", "20", "--b-dec-lr-scale", "0", "--b-enc-lr-scale", "1.5"]
    assert main([*args, *flags, "--out", str(tmp_path / "r")]) == 0
    cfg = json.loads((tmp_path / "r" / "saekit.json").read_text())["dictionary"]
    assert (cfg["W_dec_lr_scale"], cfg["b_dec_lr_scale"], cfg["b_enc_lr_scale"]) == (20.0, 0.0, 1.5)
    assert main([*args, "--out", str(tmp_path / "d")]) == 0  # the defaults of a top-k kind
    cfg = json.loads((tmp_path / "d" / "saekit.json").read_text())["dictionary"]
    assert (cfg["W_dec_lr_scale"], cfg["b_dec_lr_scale"], cfg["b_enc_lr_scale"]) == (3.0, 0.3, None)
    capsys.readouterr()
    assert main([*args, "--w-dec-lr-scale", "-1", "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "W_dec_lr_scale must be ≥ 0" in err and "got -1" in err, err
    assert not (tmp_path / "n").exists()


def test_demo_planted_option_picks_the_planted_models_settings_and_refuses_an_unknown_language(tmp_path, capsys):
    from saekit.cli import build_parser
    from saekit.pipeline.demo import DEMO_MODEL, _demo_model

    assert build_parser().parse_args(["demo", "--planted"]).planted == "planted:small"
    assert build_parser().parse_args(["demo"]).planted is None
    cfg = _demo_model("planted:small")  # the planted language's own vocabulary, one layer, weight decay
    assert (cfg.vocab_size, cfg.n_layers, cfg.weight_decay) == (532, 1, 1.0) and _demo_model(None) is DEMO_MODEL
    code = main(["demo", "--planted", "planted:nope", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nope" in err, err
    assert not (tmp_path / "d" / "models").exists()


def test_tail_average_flag_reaches_the_run_and_a_bad_one_is_one_sentence(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"x": torch.randn(512, 8)}, str(tmp_path / "a.safetensors"))
    args = ["train", "--activations", str(tmp_path / "a.safetensors"), "--kind", "relu", "--n-latents", "16",
            "--tokens", "512", "--batch-size", "128", "--device", "cpu"]  # fmt: skip
    assert main([*args, "--tail-average", "0.5", "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "train_config.json").read_text())["train"]["tail_average"] == 0.5
    assert main([*args, "--out", str(tmp_path / "d")]) == 0  # not given: the long-run rule's (TrainConfig.tail_fraction)
    assert json.loads((tmp_path / "d" / "train_config.json").read_text())["train"]["tail_average"] is None
    capsys.readouterr()
    assert main([*args, "--tail-average", "2", "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tail_average must be a fraction of the steps in [0, 1]" in err and "got 2" in err, err
    assert not (tmp_path / "n").exists()
