"""The Python examples of docs/crosscoders.md run as written and print what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "crosscoders.md"


def test_crosscoder_examples_run_and_print_what_the_page_says():
    text = PAGE.read_text()
    code = re.findall(r"<!-- runnable -->\n```python\n(.*?)```", text, re.S)
    assert len(code) == 4 == text.count("```python")
    out = io.StringIO()
    namespace: dict = {"__name__": "__doc_example__"}
    with contextlib.redirect_stdout(out):
        for block in code:
            exec(compile(block, str(PAGE), "exec"), namespace)
    printed = out.getvalue().splitlines()
    claimed = re.findall(r"^prints `([^`]*)`(?:, then `([^`]*)`)?", text, re.M)
    expected = [s for pair in claimed for s in pair if s]
    assert printed == expected
