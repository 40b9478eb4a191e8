"""glibc malloc settings for long CPU training runs: keep freed memory for the next step.

PyTorch's CPU tensors come from malloc. glibc serves each block above its mmap threshold (at most
32 MiB; a demo model's logits, 2048 tokens × 4096 × 4 bytes, are exactly that) with a fresh ``mmap``
and hands it back on free, and trims the heap's free top, so every training step faults its large
tensors in again page by page. On the demo's model that was about 42 thousand page faults per step
and 15 % of the CPU time in the kernel (benchmarks/RESULTS.md, "The demo's time").
``keep_freed_memory()`` turns both off (``M_MMAP_MAX = 0``, a 2 GiB ``M_TRIM_THRESHOLD``): freed
blocks stay in the process and are reused, at the price of a peak resident size that is not given
back until the process ends. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h> parameter numbers


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory (no per-block mmap, no heap trimming); True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # glibc only: musl has none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
