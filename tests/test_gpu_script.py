"""The GPU script (benchmarks/gpu/run.sh) rehearsed on CPU, so it cannot rot before a GPU is lent.

SAEKIT_GPU_DRYRUN=1 runs the same script at tiny sizes with no installs and no peers: stages
that need CUDA say so, the code paths that run on CPU do run and leave their figures.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"
STAGES = ROOT / "benchmarks" / "gpu" / "stages.py"


def _env(**extra):
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHON=sys.executable, PYTHONPATH=path, **extra)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], env=_env(SAEKIT_GPU_DRYRUN="1"), cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    recs = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    return out, recs, proc.stdout


def test_outdir_fits_the_device_tools_return_limits(dry_run):
    out, _, _ = dry_run
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"results.jsonl", "summary.md", "run.log"}
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in files)


def test_every_stage_ran_under_its_cap_and_cuda_stages_say_no_cuda(dry_run):
    _, recs, stdout = dry_run
    ends = {r["name"]: r["status"] for r in recs if r["stage"] == "stage_end"}
    assert ends == dict.fromkeys(["tests", "decode", "encode", "train_step", "e2e", "nccl"], "ok")
    by = {}
    for r in recs:
        by.setdefault(r["stage"], []).append(r)
    assert by["install"][0]["status"].startswith("skipped: dry run")
    for stage in ("tests", "decode", "encode", "peer_step", "e2e", "nccl"):
        assert any(r.get("status", "").startswith("skipped: no CUDA") for r in by[stage]), stage
    assert "done in" in stdout


def test_cpu_paths_leave_their_figures(dry_run):
    _, recs, _ = dry_run
    got = {(r["stage"], r.get("impl") or r.get("backend") or r.get("framework")): r for r in recs}
    for key in [("decode", "saekit-torch"), ("encode", "saekit-torch"), ("train_step", "torch"), ("peer_step", "saekit")]:
        assert key in got and got[key]["ms"] > 0 and "error" not in got[key], key
    assert got[("decode", "saekit-torch")]["n"] == 256 and got[("decode", "saekit-torch")]["dtype"] == "float32"
    e2e = [r for r in recs if r["stage"] == "e2e" and "wait_fraction" in r]
    assert len(e2e) == 1 and 0 <= e2e[0]["wait_fraction"] <= 1 and e2e[0]["tokens_per_s"] > 0


def test_summary_table_holds_every_stage(dry_run):
    out, recs, _ = dry_run
    md = (out / "summary.md").read_text()
    for stage in ("install", "tests", "decode", "encode", "train_step", "peer_step", "e2e", "nccl"):
        assert f"## {stage}\n" in md
    ms = next(r["ms"] for r in recs if r["stage"] == "decode" and r.get("impl") == "saekit-torch")
    cell = f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"  # summary.py's number format
    assert f"| float32 | 64 | 256 | 8 | saekit-torch | {cell} |" in md


def test_a_stage_cut_by_its_cap_is_recorded_as_timeout(tmp_path):
    for name, rc in (("slow", 124), ("broken", 2)):
        cmd = [sys.executable, str(STAGES), "mark", "--out", str(tmp_path), "--name", name, "--rc", str(rc), "--cap", "5"]
        subprocess.run(cmd, check=True, env=_env())
    subprocess.run([sys.executable, str(STAGES), "summary", "--out", str(tmp_path)], check=True, env=_env())
    md = (tmp_path / "summary.md").read_text()
    assert "| slow | timeout | 0 | 5 |" in md and "| broken | failed rc=2 | 0 | 5 |" in md
    assert "## decode\n\nno record" in md
