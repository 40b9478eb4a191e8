"""A training run folder's own record: ``source.json`` (what to train on, how) and whether the
run has finished.

Paths in ``source.json`` are stored relative to the run folder and the run folder is always
the folder being resumed (``out_dir`` is not trusted from the file): a copied or moved run
resumes itself, from any working directory, and never writes to the folder it was copied from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.fileutil import atomic_write_json, read_json
from saekit.runfolder import record_paths, resolve_paths

SOURCE_FILE = "source.json"
PATH_KEYS = ("cache", "model", "activations", "dataset")  # source fields that may name files or folders


def save_spec(out: Path, spec: dict[str, Any]) -> Path:
    """Write ``spec`` to ``out/source.json`` with its paths relative to ``out``."""
    stored = {**spec, "source": record_paths(spec["source"], PATH_KEYS, out), "train": dict(spec["train"])}
    stored["train"]["out_dir"] = "."  # the run folder is wherever this file is
    return atomic_write_json(out / SOURCE_FILE, stored)


def load_spec(out: Path) -> dict[str, Any]:
    """The spec of the run in ``out``, with its paths resolved against ``out`` and ``out_dir = out``."""
    spec = read_json(out / SOURCE_FILE, "training spec")
    spec["source"] = resolve_paths(spec.get("source", {}), PATH_KEYS, out)
    spec["train"] = {**spec.get("train", {}), "out_dir": str(out)}
    return spec


def finished_note(out: Path) -> str | None:
    """'OUT is a finished run (...)' when every checkpoint under ``out`` is at its last step and
    its dictionaries are saved; None when there is training left to resume."""
    from saekit.config import TrainConfig
    from saekit.training.checkpoint import CHECKPOINT_NAME, load_checkpoint

    checkpoints = sorted([*out.glob(CHECKPOINT_NAME), *out.glob(f"*/{CHECKPOINT_NAME}")])
    if not checkpoints:
        return None
    steps = 0
    for path in checkpoints:
        state = load_checkpoint(path)
        total = TrainConfig.from_dict({**state["train_config"], "out_dir": None}).steps
        runs = state.get("runs", [])
        saved = [path.parent / "saekit.json"] if len(runs) == 1 else [path.parent / r["name"] / "saekit.json" for r in runs]
        if int(state["step"]) < total or not all(f.is_file() for f in saved):
            return None
        steps = total
    return f"{out} is a finished run ({steps} of {steps} steps, dictionaries saved); nothing to resume, nothing was changed."


def check_run(tcfg: Any, source: Any, given: dict[str, Any], resumed: bool = False) -> list[str]:
    """One-sentence warnings about a run that will work but probably not as meant; a ConfigError
    for settings the user gave (``given``: the [train] keys set by flags or TOML) that contradict
    each other."""
    from saekit.errors import ConfigError

    warmup = given.get("lr_warmup_steps")
    if isinstance(warmup, int) and warmup >= tcfg.steps > 1:
        raise ConfigError(
            f"lr_warmup_steps={warmup} is not shorter than the run ({tcfg.steps} steps of {tcfg.batch_size} "
            "tokens); shorten the warm-up or train on more tokens."
        )
    notes = []
    if not resumed and "total_tokens" not in given:
        notes.append(f"no --tokens given: training on the default {tcfg.total_tokens:,} tokens.")
    rows = _source_rows(source)
    if rows and tcfg.total_tokens > 4 * rows:
        notes.append(
            f"the run reads its {rows:,} activation rows {tcfg.total_tokens / rows:.0f} times over "
            f"({tcfg.total_tokens:,} tokens); repeated rows overfit: cache more tokens or train on fewer."
        )
    return notes


def _source_rows(source: Any) -> int | None:
    """Rows a finite source holds (a cache or tensors); None for a live stream."""
    x = source[0] if isinstance(source, tuple) else source
    if hasattr(x, "shape"):
        return int(x.shape[0])
    n = getattr(source, "n_tokens", None)
    return int(n) if isinstance(n, int) and not hasattr(source, "handle") else None
