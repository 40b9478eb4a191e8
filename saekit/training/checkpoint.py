"""Checkpoints: one file with everything an exact resume needs, written atomically.

Contents: step and token counters; per dictionary its config, weights (and buffers), Adam
state, dead-latent counters and resampling RNG; the source reader's state; the torch RNG
states. The learning-rate schedule is a pure function of the step, so the step restores it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.errors import DataError
from saekit.fileutil import atomic_torch_save, load_torch_file

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    state = {"version": CHECKPOINT_VERSION, **state}
    try:
        return atomic_torch_save(path, state)
    except DataError as e:  # a full disk: the checkpoint written before is still whole
        if Path(path).is_file():
            head = str(e).split("; the file that was there before")[0]
            raise DataError(f"{head}; the last checkpoint there is intact: fix the cause and resume.") from None
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; nothing to resume (train without --resume first).")
    state = load_torch_file(path, "checkpoint")  # weights_only: a planted checkpoint cannot run code
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"checkpoint {path} is not a saekit checkpoint of version {CHECKPOINT_VERSION}.")
    return state
