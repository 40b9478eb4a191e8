"""Never lose a user's data (issue 13, items 1-7): overwrite deletes only saekit's files, output
folders are refused unless --overwrite, a run folder resumes itself, a finished run is left
alone, one writer per folder, nothing is unpickled, files follow the umask."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import save_tiny_model_folder, tiny_hooked_transformer

import saekit
from saekit import runfolder
from saekit.cli import main
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_save_safetensors, atomic_torch_save, atomic_write_json

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["--n-latents", "32", "--k", "4", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    path = tmp_path_factory.mktemp("acts") / "acts.safetensors"
    save_file({"x": torch.randn(3000, 16, generator=torch.Generator().manual_seed(0))}, str(path))
    return path


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny", tiny_hooked_transformer())


@pytest.fixture()
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "SAEKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------- 1. overwrite deletes only saekit's files
def test_cache_overwrite_never_deletes_a_foreign_file(model_folder, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["cache", "--model", model_folder, "--hookpoints", "blocks.0.hook_resid_post", "--out", out, "--device", "cpu"]
    assert cli(capsys, *base, "--tokens", "200")[0] == 0
    (out / "important").mkdir()
    (out / "important" / "thesis.tex").write_text("x")
    code, err = cli(capsys, *base, "--tokens", "300", "--overwrite")
    assert code == 2 and "important/thesis.tex" in err and "nothing was deleted" in err and len(err.splitlines()) == 1
    assert (out / "important" / "thesis.tex").read_text() == "x"
    assert json.loads((out / "manifest.json").read_text())["n_tokens"] == 200  # the old cache untouched too
    (out / "important" / "thesis.tex").unlink()
    assert cli(capsys, *base, "--tokens", "300", "--overwrite")[0] == 0  # saekit's own cache is replaced
    assert json.loads((out / "manifest.json").read_text())["n_tokens"] == 300
    assert not (out / runfolder.LOCK_NAME).exists()  # the lock is given back


def test_model_train_overwrite_never_deletes_a_foreign_file(tmp_path, capsys):
    out = tmp_path / "m"
    (out / "important").mkdir(parents=True)
    (out / "important" / "thesis.tex").write_text("x")
    code, err = cli(capsys, "model", "train", "--variant", "baseline", "--steps", "1", "--out", out, "--overwrite")
    assert code == 2 and "important/thesis.tex" in err and "saekit did not write" in err
    assert (out / "important" / "thesis.tex").read_text() == "x"


def test_safe_clear_deletes_listed_files_and_keeps_the_rest(tmp_path):
    folder = tmp_path / "c"
    (folder / "shards").mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "shards" / "shard_000000.safetensors").write_bytes(b"x")
    runfolder.prepare_output(folder, "cache", overwrite=True)
    assert runfolder.files_in(folder) == []
    (folder / "shards").mkdir()
    (folder / "shards" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="shards/notes.txt"):
        runfolder.prepare_output(folder, "cache", overwrite=True)
    assert (folder / "shards" / "notes.txt").exists()


def _kill_during_safetensors_save(folder: Path) -> Path:
    """Start a real safetensors save_file into ``folder`` and SIGKILL it mid-write: safetensors
    (0.8) writes a ".tmpXXXXXX" file of its own first, which the kill leaves behind."""
    code = (
        "import sys, torch; from safetensors.torch import save_file; "
        "save_file({'a': torch.zeros(400_000_000, dtype=torch.uint8)}, sys.argv[1])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / "big.safetensors")])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        left = [p for p in folder.iterdir() if p.name.startswith(".tmp")]
        if left:
            proc.kill()
            proc.wait()
            return left[0]
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    pytest.fail("safetensors' save_file finished (or hung) without a .tmpXXXXXX file of its own in the folder")


# a platform condition, decided before the run: 0.8 is the version seen writing through a temporary file
SAFETENSORS = tuple(int(v) for v in importlib.metadata.version("safetensors").split(".")[:2])


@pytest.mark.skipif(SAFETENSORS < (0, 8), reason="safetensors older than 0.8 is not known to write a temporary file")
def test_a_shard_write_killed_inside_safetensors_leaves_nothing_that_blocks_the_rerun(tmp_path):
    from saekit.activations.writer import CacheWriter

    folder = tmp_path / "c"
    (folder / "shards").mkdir(parents=True)
    left = _kill_during_safetensors_save(folder / "shards")
    assert runfolder.is_owned(left.relative_to(folder), "cache")
    assert runfolder.is_blank(folder)  # a start killed before its first shard blocks nothing
    w = CacheWriter(folder, {"h": 4}, shard_tokens=8)
    assert not left.exists()  # the resume removed it; a user's ".tmp" notes would not match
    w.close()
    assert not runfolder.is_owned(Path("shards/.tmp-notes.txt"), "cache")


# ---------------------------------------------------------------------- 2. train / export refuse a non-empty --out
def test_train_refuses_an_earlier_run_unless_overwrite_and_never_a_foreign_file(acts, tmp_path, capsys, umask022):
    out = tmp_path / "run"
    assert cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--out", out)[0] == 0
    before = snapshot(out)
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--seed", "1", "--out", out)
    assert code == 2 and "--overwrite" in err and "--resume" in err
    assert snapshot(out) == before
    (out / "thesis.tex").write_text("x")
    code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--overwrite", "--out", out)
    assert code == 2 and "thesis.tex" in err
    assert (out / "thesis.tex").exists() and (out / "sae_weights.safetensors").read_bytes() == before["sae_weights.safetensors"]
    (out / "thesis.tex").unlink()
    code, _ = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--seed", "1", "--overwrite", "--out", out)
    assert code == 0 and (out / "sae_weights.safetensors").read_bytes() != before["sae_weights.safetensors"]
    # 7. every file follows the umask (0644 under 022), not mkstemp's private 0600
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_export_refuses_an_earlier_export_unless_overwrite(acts, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--out", run)[0] == 0
    out = tmp_path / "exp"
    assert cli(capsys, "export", run, "--format", "saelens", "--out", out)[0] == 0
    first = snapshot(out)
    code, err = cli(capsys, "export", run, "--format", "saelens", "--out", out)
    assert code == 2 and "--overwrite" in err and snapshot(out) == first
    assert cli(capsys, "export", run, "--format", "saelens", "--out", out, "--overwrite")[0] == 0
    (out / "README.md").write_text("my notes")
    code, err = cli(capsys, "export", run, "--format", "saelens", "--out", out, "--overwrite")
    assert code == 2 and "README.md" in err and (out / "README.md").read_text() == "my notes"


# ---------------------------------------------------------------------- 3, 5. a run folder resumes itself; one writer
def _start_run(acts: Path, cwd: Path, out: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "saekit", "train", "--activations", str(acts), *TRAIN,
           "--tokens", str(64 * 640), "--checkpoint-every", "20", "--out", out]  # fmt: skip
    return subprocess.Popen(cmd, cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read().decode()}")
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.005)


def test_second_writer_refused_first_finishes_intact_and_a_copy_resumes_itself(acts, tmp_path, capsys, monkeypatch):
    """One real run serves both: a second writer is refused while it runs (5), and a copy of its
    folder taken mid-run resumes itself from another working directory (3)."""
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(acts, first / "acts.safetensors")
    proc = _start_run(Path("acts.safetensors"), first, "run")  # paths relative to the first cwd
    try:
        _wait_for(first / "run" / runfolder.LOCK_NAME, proc)
        code, err = cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--overwrite", "--out", first / "run")
        alive = proc.poll() is None
        _wait_for(first / "run" / "checkpoint.pt", proc)
        second = tmp_path / "second"
        shutil.copytree(first, second)  # mid-run: every file there is whole (atomic writes)
    finally:
        _, stderr = proc.communicate(timeout=600)
    assert code == 2 and f"pid {proc.pid}" in err and "in use" in err and len(err.splitlines()) == 1
    assert alive and proc.returncode == 0, stderr.decode()
    assert json.loads((first / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 640
    assert saekit.load(first / "run").cfg.n_latents == 32 and not (first / "run" / runfolder.LOCK_NAME).exists()

    assert (second / "run" / runfolder.LOCK_NAME).exists()  # copied from a process now gone: stale
    assert torch.load(second / "run" / "checkpoint.pt", weights_only=True)["step"] < 640
    (first / "acts.safetensors").unlink()  # only the copy's input is left
    original = snapshot(first / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = cli(capsys, "train", "--resume", "--out", second / "run")
    assert code == 0, err
    assert snapshot(first / "run") == original  # the folder it was copied from is untouched
    assert json.loads((second / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 640
    assert saekit.load(second / "run").cfg.n_latents == 32
    assert not list(elsewhere.iterdir())  # nothing written relative to the working directory


def test_stale_lock_of_a_dead_process_is_taken_over_and_a_live_one_is_not(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "f"
    folder.mkdir()
    import socket

    (folder / runfolder.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "x"}))
    path = runfolder.claim(folder)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    runfolder.release(path)
    assert not path.exists()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / runfolder.LOCK_NAME).write_text(json.dumps({"pid": alive.pid, "host": socket.gethostname(), "since": "x"}))
        with pytest.raises(ConfigError, match=f"pid {alive.pid}"):
            runfolder.claim(folder)
    finally:
        alive.kill()
        alive.wait()


# ---------------------------------------------------------------------- 4. a finished run is left alone
def test_resume_of_a_finished_run_says_so_and_changes_nothing(acts, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--out", out)[0] == 0
    before = snapshot(out)
    assert json.loads(before["saekit.json"])["metrics"]
    code, err = cli(capsys, "train", "--resume", "--out", out)
    assert code == 0 and "finished" in err and "nothing" in err
    assert snapshot(out) == before


# ---------------------------------------------------------------------- 6. nothing is unpickled
class _Plant:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_planted_checkpoint_does_not_run_code(acts, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--out", out)[0] == 0
    (out / "saekit.json").unlink()  # so the run is not finished and resume loads the checkpoint
    marker = tmp_path / "pwned"
    torch.save({"version": 1, "step": _Plant(marker)}, out / "checkpoint.pt")
    code, err = cli(capsys, "train", "--resume", "--out", out)
    assert code == 2 and "checkpoint.pt" in err and "refuses" in err and len(err.splitlines()) == 1
    assert not marker.exists()


def test_planted_producer_state_and_ae_pt_are_refused_in_one_sentence(tmp_path):
    from saekit.fileutil import load_torch_file

    marker = tmp_path / "pwned"
    torch.save({"step": 3, "producer": _Plant(marker)}, tmp_path / "producer_state.pt")
    with pytest.raises(DataError, match="producer state .* refuses"):
        load_torch_file(tmp_path / "producer_state.pt", "producer state")
    dl = tmp_path / "dl"
    dl.mkdir()
    torch.save({"encoder.weight": _Plant(marker)}, dl / "ae.pt")
    with pytest.raises(DataError) as e:
        saekit.load(dl)
    msg = str(e.value)
    assert "ae.pt" in msg and "\n" not in msg and "\x1b" not in msg and len(msg) < 300
    assert not marker.exists()
    src = (REPO / "saekit" / "parallel" / "hookpoints.py").read_text()
    assert "weights_only=False" not in src and "load_torch_file(path" in src


def test_checkpoints_load_with_weights_only(acts, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "train", "--activations", acts, *TRAIN, "--tokens", "640", "--checkpoint-every", "3", "--out", out)[0] == 0
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 10


# ---------------------------------------------------------------------- 7. the umask
@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        files = [
            atomic_write_json(tmp_path / "a.json", {"x": 1}),
            atomic_save_safetensors(tmp_path / "b.safetensors", {"x": torch.zeros(2)}),
            atomic_torch_save(tmp_path / "c.pt", {"x": torch.zeros(2)}),
        ]
    finally:
        os.umask(old)
    assert [f.stat().st_mode & 0o777 for f in files] == [mode] * 3
