"""Per-step metrics as JSON lines (one object per dictionary per logged step)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path


class MetricsLog:
    """Appends JSON lines to ``path`` (or keeps them in memory when path is None)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.records: list[dict] = []
        self._fh = None

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines logged after the checkpoint's step (they will be logged again)."""
        if self.path is None or not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("step", 0) <= step:
                keep.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.path is None:
            return
        try:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps(record, sort_keys=True) + "\n")
            self._fh.flush()
        except OSError as e:  # a full disk: one sentence naming the file, not a traceback
            from saekit.errors import DataError

            why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise DataError(f"could not write {self.path}: {why}; the last checkpoint is intact.") from None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
