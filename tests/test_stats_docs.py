"""The example of docs/comparing.md's "Verdicts: statistics" section runs as written."""

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "comparing.md"


def test_verdicts_example_runs():
    (code,) = re.findall(r"<!-- runnable: verdicts -->\n```python\n(.*?)```", PAGE.read_text(), re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(PAGE), "exec"), {"__name__": "__doc_example__"})
    assert out.getvalue().splitlines() == ["better worse", "not enough model seeds"]


def test_seed_consistency_example_runs():
    (code,) = re.findall(r"<!-- runnable: seed-consistency -->\n```python\n(.*?)```", PAGE.read_text(), re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(PAGE), "exec"), {"__name__": "__doc_example__"})
    assert out.getvalue().splitlines() == ["False", "True"]
