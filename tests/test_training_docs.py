"""The runnable examples of docs/dictionaries.md and docs/training.md run as written, and the
sweep configs in configs/ parse into valid dictionary configs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from saekit.config import DictionaryConfig, TrainConfig
from saekit.training.spec import expand_sweep
from saekit.training.spec import read_toml as _read_toml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "dictionaries.md", ROOT / "docs" / "training.md"]
PY_BLOCKS = [
    (d.name, b) for d in DOCS for b in re.findall(r"<!-- runnable -->\n```python\n(.*?)```", d.read_text(), re.S)
]
SH_BLOCKS = [b for d in DOCS for b in re.findall(r"<!-- runnable-bash -->\n```bash\n(.*?)```", d.read_text(), re.S)]


@pytest.mark.parametrize("doc, code", PY_BLOCKS, ids=[f"{d}-{i}" for i, (d, _) in enumerate(PY_BLOCKS)])
def test_python_examples(doc, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, doc, "exec"), {"__name__": "__doc_example__"})
    expected = [m.strip() for m in re.findall(r"print\(.*\)\s+# (.*)", code)]
    assert out.getvalue().strip().splitlines() == expected


def test_cli_example(tmp_path):
    assert len(SH_BLOCKS) == 1
    lines = [ln.split("  #")[0] for ln in SH_BLOCKS[0].strip().splitlines()]
    # the resume line needs an interrupted run; the rest must run as written
    script = "\n".join(ln for ln in lines if "--resume" not in ln)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", SAEKIT_NO_PROGRESS="1")
    r = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "sae_weights.safetensors").exists()
    # --resume on a finished run says it is finished and changes nothing (issue 13)
    before = (tmp_path / "run" / "saekit.json").read_bytes()
    r = subprocess.run(
        ["bash", "-e", "-c", lines[-1]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0 and "is a finished run (156 of 156 steps" in r.stderr
    assert (tmp_path / "run" / "saekit.json").read_bytes() == before


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "configs").glob("sweep_*.toml")) + sorted((ROOT / "configs").glob("transcoder_*.toml")),
    ids=lambda p: p.name,
)
def test_sweep_configs_parse(path):
    conf = _read_toml(str(path))
    train = dict(conf["train"])
    train["total_tokens"] = 2_000_000
    TrainConfig.from_dict(train)
    dicts = conf["dictionary"] if isinstance(conf["dictionary"], list) else [conf["dictionary"]]
    cfgs = []
    for d in expand_sweep(dicts, conf.get("sweep", {})):
        d = {"n_latents": 4096, **d, "d_in": 64}
        if "hookpoint_out" in conf["source"]:
            d["transcoder"] = True
        cfgs.append(DictionaryConfig.from_dict(d))
    assert len(cfgs) >= 2
