"""`saekit toy max-of-k` as a user runs it: a real subprocess on a tiny configuration."""

import json
import subprocess
import sys


def _saekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "saekit", *args], capture_output=True, text=True, timeout=600)


def test_max_of_k_command_writes_results_and_report(tmp_path):
    out = tmp_path / "mok"
    args = ["toy", "max-of-k", "--out", str(out), "--vocab", "8", "--steps", "150", "--widths", "8,16", "--dict-tokens", "8192"]
    done = _saekit(*args)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["model"]["accuracy"] <= 1
    assert set(results["dictionaries"]) == {"resid_w8", "resid_w16", "logits_w8", "logits_w16"}
    assert 0 <= results["dictionaries"]["resid_w8"]["dedicated_max_fraction"] <= 1
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "resid_w16" in html
    again = _saekit(*args)  # the same folder again without --overwrite: refused, nothing lost
    assert again.returncode == 2 and "already holds max-of-K results" in again.stderr
    assert json.loads((out / "results.json").read_text()) == results


def test_max_of_k_command_refuses_a_variant_that_does_not_apply(tmp_path):
    done = _saekit("toy", "max-of-k", "--out", str(tmp_path / "x"), "--variants", "pruned")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "does not apply to max-of-K" in done.stderr
    assert not (tmp_path / "x").exists()
