"""What a dictionary folder holds, for `saekit info`: its config, training and stored metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saekit.dictionaries.folder import dictionary_folders, read_meta
from saekit.errors import DataError
from saekit.io.foreign import detect_format, load_folder


def dictionary_info(path: str | Path) -> list[dict[str, Any]]:
    """One record per dictionary at or under ``path``: folder, format, config, the metrics
    stored at the end of training, training settings and ``eval.json`` when present."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"no such folder: {root} (a dictionary folder or run folder was expected).")
    folders = dictionary_folders(root)
    if not folders:
        raise DataError(f"{root} holds no dictionary (no saekit.json, cfg.json + weights, sae.safetensors or ae.pt).")
    out = []
    for folder in folders:
        sae = load_folder(folder)
        meta = read_meta(folder)
        evaluated = folder / "eval.json"
        out.append(
            {
                "folder": str(folder),
                "format": detect_format(folder),
                "config": {k: v for k, v in sae.cfg.to_dict().items() if v not in (None, "", False)},
                "metrics": meta.get("metrics", {}),
                "train": meta.get("train", {}),
                "eval": json.loads(evaluated.read_text()) if evaluated.is_file() else {},
            }
        )
    return out


def format_info(records: list[dict[str, Any]]) -> str:
    """Readable lines: per dictionary its folder, then config, metrics and eval as key = value."""
    lines = []
    for rec in records:
        lines.append(f"{rec['folder']} ({rec['format']})")
        for section in ("config", "metrics", "eval"):
            items = rec[section]
            if not items:
                continue
            lines.append(f"  {section}:")
            for key, value in items.items():
                shown = f"{value:.4g}" if isinstance(value, float) else value
                lines.append(f"    {key} = {shown}")
    return "\n".join(lines)
