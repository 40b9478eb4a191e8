"""docs/editing.md: its Python example runs as written and prints what the page says."""

from __future__ import annotations

from test_docs_examples import blocks, run_page


def test_editing_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(blocks("editing.md")) == 1
    assert run_page("editing.md").strip() == "64 [0, 1, 4] 2 True"
