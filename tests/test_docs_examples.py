"""The Python examples of docs/caching.md (run in order: later ones use the model and tokens of
the first) and docs/kernels.md run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def blocks(page: str) -> list[str]:
    return re.findall(r"<!-- runnable -->\n```python\n(.*?)```", (DOCS / page).read_text(), re.S)


def run_page(page: str) -> str:
    code = blocks(page)
    out = io.StringIO()
    namespace: dict = {"__name__": "__doc_example__"}
    with contextlib.redirect_stdout(out):
        for block in code:
            exec(compile(block, str(DOCS / page), "exec"), namespace)
    return out.getvalue()


@pytest.mark.parametrize("page, n_blocks", [("caching.md", 3), ("kernels.md", 1)])
def test_every_example_is_marked_runnable(page, n_blocks):
    assert len(blocks(page)) == n_blocks == (DOCS / page).read_text().count("```python")


def test_caching_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run_page("caching.md").splitlines()
    assert out[0] == "{'blocks.0.hook_resid_post': (8, 32, 64), 'blocks.0.attn.hook_z': (8, 32, 64)}"
    assert re.fullmatch(r"tensor\(\[[\d, ]+\]\) tensor\(\[[\d, ]+\], dtype=torch.int32\)", out[1])  # doc ids, positions
    assert re.fullmatch(r"trainer waited \d+% of the time", out[2])
    assert len(out) == 3


def test_kernels_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_page("kernels.md") == ""  # it asserts instead of printing


def test_dictionaries_ground_truth_example_runs():
    out = run_page("dictionaries.md").splitlines()
    assert out[-1] == str(
        sorted(["absorption", "absorption_decoder", "absorption_per_parent", "f1", "l0", "mcc", "precision", "recall", "true_l0", "uniqueness"])
    )
