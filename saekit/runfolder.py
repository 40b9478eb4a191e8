"""Output folders saekit writes: one writer at a time, and it deletes only its own files.

- ``claim(folder)`` takes an exclusive lock (``.saekit.lock`` holding the owner's pid, host and
  start time). A second writer is refused with one sentence; a lock whose process is gone (same
  host, pid not alive) is stale and taken over. Locks are released by ``release_all()`` (the
  CLI calls it after every command) or at interpreter exit.
- ``prepare_output(folder, kind, overwrite)`` makes sure a folder may be written: empty (empty
  sub-folders and saekit's own temporary files do not count), or, with ``overwrite``, holding
  only files that saekit's writer of that ``kind`` produces, which are then deleted. A file
  saekit did not write is never deleted: the folder is refused, naming that file.
- ``record_paths`` / ``resolve_paths``: paths stored in a run folder are kept relative to that
  folder, so a copied or moved run (or one resumed from another working directory) finds them.
"""

from __future__ import annotations

import atexit
import fnmatch
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from saekit.errors import ConfigError

LOCK_NAME = ".saekit.lock"

# What each saekit writer puts in its output folder (glob patterns on the path relative to it).
# Temporary files of atomic writes (".NAME.XXXX.tmp") and the lock belong to every kind, and so
# do the ".tmpXXXXXX" files safetensors (0.8, through Rust's tempfile) writes inside save_file before
# its own rename: a process killed mid-write leaves one behind.
COMMON = [LOCK_NAME, ".*.tmp", "*/.*.tmp", "*.jsonl.tmp", ".tmp??????", "*/.tmp??????"]
OWNED: dict[str, list[str]] = {
    "cache": ["manifest.json", "shards/shard_[0-9][0-9][0-9][0-9][0-9][0-9].safetensors"],
    "model": [
        "model.safetensors", "tl_config.json", "saekit_model.json", "masks.safetensors",
        "train_log.jsonl", "tokenizer/*",
    ],
    "train": [
        "source.json", "checkpoint.pt", "checkpoint.rank*-of-*.pt", "producer_state.pt", "metrics.jsonl",
        "train_config.json", "cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "saekit.json",
        # sweep members and --hookpoints jobs: one sub-folder each with the same files
        "*/checkpoint.pt", "*/checkpoint.rank*-of-*.pt", "*/metrics.jsonl", "*/train_config.json",
        "*/cfg.json", "*/sae_weights.safetensors", "*/sparsity.safetensors", "*/saekit.json",
    ],
    "export": [
        "cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "sae.safetensors",
        "layer_*.safetensors", "config.yaml",
        "*/cfg.json", "*/sae_weights.safetensors", "*/sparsity.safetensors", "*/sae.safetensors",
    ],
}


# ---------------------------------------------------------------------- what saekit owns
def files_in(folder: Path) -> list[Path]:
    """Every file (and symlink) under ``folder``, relative to it, sorted."""
    out = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        out += [base / f for f in files]
        out += [base / d for d in dirs if (Path(root) / d).is_symlink()]
    return sorted(out)


def is_owned(rel: Path, kind: str) -> bool:
    """True when ``rel`` (relative to an output folder) is a file saekit's ``kind`` writer makes."""
    text = rel.as_posix()
    return any(fnmatch.fnmatchcase(text, pat) for pat in COMMON + OWNED[kind])


def foreign_files(folder: Path, kind: str) -> list[Path]:
    return [f for f in files_in(folder) if not is_owned(f, kind)]


def is_blank(folder: Path) -> bool:
    """No files at all, or only saekit's lock and temporary files (empty sub-folders are fine:
    a start that failed early must not block the retry)."""
    return not folder.exists() or all(
        any(fnmatch.fnmatchcase(f.as_posix(), p) for p in COMMON) for f in files_in(folder)
    )


def prepare_output(
    folder: str | Path, kind: str, overwrite: bool, hint: str = "pass --overwrite", what: str = "saekit output"
) -> None:
    """Check that ``folder`` may be written (see the module doc); with ``overwrite`` delete
    saekit's earlier output there, after checking that every file in it is saekit's."""
    folder = Path(folder)
    if is_blank(folder):
        return
    foreign = foreign_files(folder, kind)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise ConfigError(
            f"output folder {folder} holds {foreign[0].as_posix()}{more}, which saekit did not write; "
            "nothing was deleted: move it away or choose another --out."
        )
    if not overwrite:
        raise ConfigError(f"output folder {folder} already holds {what}; {hint} to replace it or choose another --out.")
    clear_owned(folder, kind)


def clear_owned(folder: Path, kind: str) -> None:
    """Delete the files saekit's ``kind`` writer makes (not the lock), then empty sub-folders."""
    for rel in files_in(folder):
        if rel.as_posix() != LOCK_NAME and is_owned(rel, kind):
            (folder / rel).unlink()
    for root, dirs, _ in os.walk(folder, topdown=False):
        for d in dirs:
            p = Path(root) / d
            if not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()


# ---------------------------------------------------------------------- one writer per folder
_HELD: dict[Path, int] = {}  # lock file -> how many claims this process holds on it
_CREATED: set[Path] = set()  # folders claim() created: removed again if left blank


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
        return None


def _is_stale(path: Path, owner: dict[str, Any] | None) -> bool:
    if owner is None:  # unreadable: a writer killed between creating and filling it
        try:
            return time.time() - path.stat().st_mtime > 10
        except FileNotFoundError:
            return True
    return owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1)))


def claim(folder: str | Path) -> Path:
    """Take the exclusive lock on output folder ``folder`` (created if needed) for this process."""
    folder = Path(folder)
    if not folder.exists():
        folder.mkdir(parents=True)
        _CREATED.add(folder.resolve())
    path = (folder / LOCK_NAME).resolve()
    if path in _HELD:
        _HELD[path] += 1
        return path
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            owner = _read_lock(path)
            if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == me["host"]:
                break  # this process's own lock (taken through another path spelling)
            if _is_stale(path, owner):
                path.unlink(missing_ok=True)
                continue
            who = f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('since')}" if owner else "another process"
            raise ConfigError(
                f"output folder {folder} is in use by another saekit process ({who}); wait for it to finish "
                f"or choose another --out (if that process is gone, delete {folder / LOCK_NAME})."
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        break
    _HELD[path] = _HELD.get(path, 0) + 1
    return path


def release(path: Path) -> None:
    """Give back one claim on a lock from ``claim``; the file goes when the last one is given."""
    n = _HELD.get(path, 0) - 1
    if n > 0:
        _HELD[path] = n
        return
    _HELD.pop(path, None)
    owner = _read_lock(path)
    if owner is not None and owner.get("pid") == os.getpid():
        path.unlink(missing_ok=True)
    folder = path.parent
    if folder in _CREATED:  # a command that failed before writing leaves no folder behind
        _CREATED.discard(folder)
        if folder.exists() and is_blank(folder) and not files_in(folder):
            clear_owned(folder, "cache")  # only empty sub-folders are left: remove them
            folder.rmdir()


def release_all() -> None:
    for path in list(_HELD):
        _HELD[path] = 1
        release(path)


atexit.register(release_all)


def is_writer() -> bool:
    """False on the ranks of a torchrun job other than 0 (rank 0 owns the output folder)."""
    return os.environ.get("RANK", "0") == "0"


# ---------------------------------------------------------------------- paths in a run folder
RELATIVE_KEY = "relative_to_run"


def record_paths(spec: dict[str, Any], keys: tuple[str, ...], folder: Path) -> dict[str, Any]:
    """A copy of ``spec`` whose existing paths under ``keys`` are stored absolute, with their
    form relative to ``folder`` beside them (under ``relative_to_run``); names that are not
    paths (a model name) stay as they are."""
    out = dict(spec)
    rel = {}
    for key in keys:
        value = out.get(key)
        if isinstance(value, str) and value and os.path.exists(value):
            out[key] = os.path.abspath(value)
            rel[key] = os.path.relpath(out[key], os.path.abspath(folder))
    if rel:
        out[RELATIVE_KEY] = rel
    return out


def resolve_paths(spec: dict[str, Any], keys: tuple[str, ...], folder: Path) -> dict[str, Any]:
    """Undo ``record_paths``: each path is looked up relative to ``folder`` first (a run copied
    or moved together with its inputs), then as stored; the one that exists is used."""
    out = dict(spec)
    rel = out.pop(RELATIVE_KEY, {}) or {}
    for key in keys:
        value = out.get(key)
        if not isinstance(value, str) or not value:
            continue
        candidates = [Path(folder) / rel[key]] if key in rel else []
        candidates += [Path(value)] if os.path.isabs(value) else [Path(folder) / value, Path(value)]
        found = next((c for c in candidates if c.exists()), None)
        if found is not None:
            out[key] = os.path.normpath(found)
    return out
