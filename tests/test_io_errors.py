"""Bad input to saekit.io: each failure is one clear sentence naming the file and what was expected."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from saekit.config import DictionaryConfig
from saekit.dictionaries import create
from saekit.errors import DataError
from saekit.io import load, save_dictionary


def one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.endswith("."), msg
    assert "Traceback" not in msg


@pytest.fixture
def folder(tmp_path):
    cfg = DictionaryConfig(kind="jumprelu", d_in=8, n_latents=16, hook_name="blocks.0.hook_resid_post")
    path = tmp_path / "sae"
    save_dictionary(create(cfg, seed=0), path)
    return path


def _rewrite(path, fn):
    w = load_file(path / "sae_weights.safetensors")
    fn(w)
    save_file(w, path / "sae_weights.safetensors")


def test_missing_tensor(folder):
    _rewrite(folder, lambda w: w.pop("threshold"))
    with pytest.raises(DataError) as e:
        load(folder)
    one_sentence(str(e.value))
    assert "sae_weights.safetensors is missing tensor(s) threshold" in str(e.value)


def test_unexpected_tensor(folder):
    _rewrite(folder, lambda w: w.update(W_skip=torch.zeros(8, 8)))
    with pytest.raises(DataError, match="unexpected tensor\\(s\\) W_skip") as e:
        load(folder)
    one_sentence(str(e.value))


def test_shape_mismatch(folder):
    _rewrite(folder, lambda w: w.update(W_dec=torch.zeros(16, 9)))
    with pytest.raises(DataError) as e:
        load(folder)
    one_sentence(str(e.value))
    assert "tensor W_dec" in str(e.value) and "shape [16, 9], expected [16, 8]" in str(e.value)


def test_cfg_and_saekit_json_disagree(folder):
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["d_sae"] = 32
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="d_sae=32") as e:
        load(folder)
    one_sentence(str(e.value))


def test_unknown_architecture(folder):
    (folder / "saekit.json").unlink()  # now a plain SAELens folder
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["architecture"] = "temporal"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError) as e:
        load(folder)
    one_sentence(str(e.value))
    assert "architecture 'temporal'" in str(e.value) and "expected one of standard, topk" in str(e.value)


def test_unknown_kind_in_saekit_json(folder):
    meta = json.loads((folder / "saekit.json").read_text())
    meta["dictionary"]["kind"] = "temporal"
    (folder / "saekit.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="kind 'temporal' is not known") as e:
        load(folder)
    one_sentence(str(e.value))


def test_corrupt_weights_file(folder):
    (folder / "sae_weights.safetensors").write_bytes(b"\x00\x01not safetensors")
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load(folder)


def test_corrupt_json(folder):
    (folder / "saekit.json").write_text("{not json")
    with pytest.raises(DataError, match="saekit.json is not valid JSON") as e:
        load(folder)
    one_sentence(str(e.value))


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="holds no dictionary") as e:
        load(tmp_path)
    one_sentence(str(e.value))
    with pytest.raises(DataError, match="neither an existing folder nor a Hub repo id") as e:
        load(tmp_path / "nope" / "deeper")
    one_sentence(str(e.value))


def test_run_folder_needs_a_subfolder(tmp_path):
    cfg = DictionaryConfig(kind="relu", d_in=8, n_latents=16)
    for name in ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post"):
        save_dictionary(create(cfg, seed=0), tmp_path / name)
    with pytest.raises(DataError, match="holds 2 dictionaries .*pass subfolder=") as e:
        load(tmp_path)
    one_sentence(str(e.value))
    assert load(tmp_path, subfolder="blocks.1.hook_resid_post").cfg.n_latents == 16
    with pytest.raises(DataError, match="has no subfolder 'blocks.2.hook_resid_post'; it has blocks.0"):
        load(tmp_path, subfolder="blocks.2.hook_resid_post")


def test_cli_reports_one_line_and_exit_2(tmp_path, folder):
    _rewrite(folder, lambda w: w.pop("b_enc"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "saekit",
            "export",
            str(folder),
            "--format",
            "saelens",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saekit export: error: ") and "missing tensor(s) b_enc" in lines[0]
    assert not (tmp_path / "o").exists()
