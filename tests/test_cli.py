"""The `saekit` command as a user runs it: a real subprocess."""

import subprocess
import sys

from saekit.cli import COMMANDS


def _saekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "saekit", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_verb():
    out = _saekit("--help")
    assert out.returncode == 0
    for verb in COMMANDS:
        assert f"    {verb} " in out.stdout, verb


def test_unknown_verb_fails_with_usage():
    out = _saekit("frobnicate")
    assert out.returncode == 2 and "invalid choice: 'frobnicate'" in out.stderr
