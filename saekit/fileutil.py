"""Atomic writes: write to a temporary name in the same folder, fsync, rename.

A killed process therefore never leaves a file that looks complete but is not. The finished
file gets the mode a plain ``open()`` would give it (0666 less the umask): the temporary file
``mkstemp`` creates is private (0600), which would hide results from colleagues.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it: done under a lock, restored at once)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then fsync and rename ``tmp_path`` onto ``path``.

    An OSError while writing (a full disk, a read-only folder) becomes one DataError naming
    ``path``; the file that was there before is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # after write(): some writers (safetensors) recreate the file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = _is_write_failure(e) and _disk_full(path.parent)  # measured before the temp file goes
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _is_write_failure(e):
            raise _write_error(path, e, full) from None
        raise
    _fsync_dir(path.parent)
    return path


def _is_write_failure(e: BaseException) -> bool:
    """An OSError, or a library's error wrapping one (torch: "enforce fail at inline_container.cc",
    safetensors: "I/O error: No space left on device")."""
    if isinstance(e, OSError):
        return True
    text = str(e)
    marks = ("inline_container", "file write failed", "I/O error", "No space left")
    return isinstance(e, Exception) and any(m in text for m in marks)


def _disk_full(folder: Path) -> bool:
    """Less than 1 MiB free where the write failed: torch reports a full disk only as
    "enforce fail at inline_container.cc ... unexpected pos", without the errno."""
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def _write_error(path: Path, e: BaseException, full: bool) -> Exception:
    from saekit.errors import DataError

    text = str(e)
    if full or getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text:
        why = "the disk is full"
    else:
        why = getattr(e, "strerror", None) or (text.splitlines()[0] if text else type(e).__name__)
    return DataError(f"could not write {path}: {why}; the file that was there before is unchanged.")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict | None = None) -> Path:
    """Save a dict of tensors as safetensors atomically (tensors made contiguous on CPU)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or corrupt file into one clear DataError."""
    from saekit.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e}).") from None


def load_torch_file(path: str | os.PathLike, what: str = "PyTorch file") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    A file that needs full unpickling (it could run code) or is not a torch file at all becomes
    one DataError sentence instead of torch's multi-line advice.
    """
    import pickle

    import torch

    from saekit.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{what} {path} holds Python objects other than tensors and plain values; saekit does not "
            "unpickle them (they could run code), so it refuses to load this file."
        ) from None
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise DataError(f"{what} {path} is not a readable PyTorch file ({type(e).__name__}).") from None
