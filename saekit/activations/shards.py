"""Cache shard files: safetensors written atomically, read back by row ranges without loading.

A shard holds, for the same ``n`` token positions, one tensor per hookpoint ``[n, d]`` plus
``token_ids`` (int32), ``doc_ids`` (int64) and ``positions`` (int32). The reader parses the
safetensors header itself so it can read any row range with one ``readinto`` (no whole-file
load, no mmap growth in resident memory).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from saekit.errors import DataError
from saekit.fileutil import atomic_save_safetensors

META_KEYS = ("token_ids", "doc_ids", "positions")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ST_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
}


def sha256_file(path: str | os.PathLike, block: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[str, int]:
    """Write one shard atomically; return (sha256, bytes) of the file as written."""
    atomic_save_safetensors(path, tensors)
    return sha256_file(path), path.stat().st_size


@dataclass
class TensorSpan:
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset of the tensor data in the file

    @cached_property  # asked for on every read: computed once
    def row_bytes(self) -> int:
        n = 1
        for s in self.shape[1:]:
            n *= s
        return n * torch.empty((), dtype=self.dtype).element_size()


class ShardFile:
    """Random row-range access to one shard (header parsed once, checked against the file size)."""

    def __init__(self, path: Path, expected_bytes: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"cache shard {self.path} is missing.")
        size = self.path.stat().st_size
        if expected_bytes is not None and size != expected_bytes:
            raise DataError(
                f"cache shard {self.path} has {size} bytes but the manifest records {expected_bytes} "
                "(truncated or replaced); rebuild the cache."
            )
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise DataError(f"cache shard {self.path} is truncated (no safetensors header).")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise DataError(f"cache shard {self.path} is truncated or corrupt (bad safetensors header length).")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DataError(f"cache shard {self.path} is corrupt (unreadable safetensors header).") from None
        base = 8 + n
        self.spans: dict[str, TensorSpan] = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = _ST_DTYPES.get(info.get("dtype"))
            if dtype is None:
                raise DataError(
                    f"cache shard {self.path} holds tensor {key!r} of unsupported dtype {info.get('dtype')}."
                )
            lo, hi = info["data_offsets"]
            if base + hi > size:
                raise DataError(f"cache shard {self.path} is truncated (tensor {key!r} ends past the end of the file).")
            self.spans[key] = TensorSpan(dtype, tuple(info["shape"]), base + lo)
        self._fd: int | None = None

    def n_rows(self, key: str) -> int:
        return self.spans[key].shape[0]

    def _open_fd(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                raise DataError(f"cache shard {self.path} is missing.") from None
        return self._fd

    def advise_rows(self, ranges: list[tuple[str, int, int]]) -> None:
        """Ask the kernel to start reading these ``(key, first row, rows)`` ranges in the
        background (posix_fadvise WILLNEED): many hints keep the disk busy with several requests
        at once instead of one synchronous read at a time. A hint only: it opens the file just
        for the call (so hints for many shards never hold many files open) and ignores errors,
        which ``read_rows`` reports."""
        if not hasattr(os, "posix_fadvise"):
            return
        try:
            fd = self._fd if self._fd is not None else os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            for key, start, n in ranges:
                span = self.spans.get(key)
                if span is not None:
                    os.posix_fadvise(
                        fd, span.start + start * span.row_bytes, n * span.row_bytes, os.POSIX_FADV_WILLNEED
                    )
        except OSError:
            pass  # a hint only
        finally:
            if fd != self._fd:
                os.close(fd)

    def read_rows(self, key: str, start: int, out: torch.Tensor) -> None:
        """Read rows ``start : start + len(out)`` of tensor ``key`` into the contiguous ``out``."""
        span = self.spans.get(key)
        if span is None:
            raise DataError(f"cache shard {self.path} has no tensor {key!r}.")
        fd = self._open_fd()
        nbytes = out.shape[0] * span.row_bytes
        view = memoryview(out.view(torch.uint8).numpy().reshape(-1)) if out.numel() else memoryview(b"")
        offset = span.start + start * span.row_bytes
        got = 0
        while got < nbytes:
            n = os.preadv(fd, [view[got:nbytes]], offset + got)
            if n <= 0:
                raise DataError(f"cache shard {self.path} is truncated (short read at byte {offset + got}).")
            got += n

    def read_all(self, key: str) -> torch.Tensor:
        span = self.spans[key]
        out = torch.empty(span.shape, dtype=span.dtype)
        self.read_rows(key, 0, out)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
