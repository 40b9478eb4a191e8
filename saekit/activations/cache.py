"""Disk cache reader: shuffled batches from safetensors shards in bounded memory.

``ActivationCache(path, hookpoint)`` streams rows of one hookpoint (or a pair of hookpoints for
a transcoder, lined up row by row) in the order described in ``shuffle.py``. A background
thread reads the next fill into another preallocated pool while the trainer consumes the
current one, so memory is ``buffer_tokens`` rows (two pools of ``buffer_tokens // 2`` rows)
plus one batch, whatever the size of the cache. Rows are read in file order; the consumer
gathers each batch in the fill's random order, which is the only copy after the read.

Integrity: the manifest lists every shard with its byte size and SHA-256. Opening a cache
checks that every shard exists, has that size and a readable header; with ``verify=True``
(default) it also hashes every shard. Any mismatch raises one DataError naming the file;
nothing is silently skipped.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saekit.activations.prefetch import Prefetcher, get_unless_stopped
from saekit.activations.shards import META_KEYS, ShardFile, sha256_file
from saekit.activations.shuffle import EpochPlan, make_chunks
from saekit.activations.writer import FORMAT, MANIFEST
from saekit.errors import ConfigError, DataError
from saekit.fileutil import read_json
from saekit.progress import token_bar

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


_OPEN_READERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_prefetch_threads() -> None:
    """Stop every reader's prefetch thread before the interpreter finalises. A daemon thread
    still inside torch at exit aborted the process ("terminate called without an active
    exception", exit status 134) in 2 of 8 runs of a script that read one epoch and ended
    without ``close()``."""
    for reader in list(_OPEN_READERS):
        try:
            reader.close()
        except Exception:
            pass


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise DataError(f"cache manifest {mpath} does not exist; {path} is not a finished saekit activation cache.")
    manifest = read_json(mpath, "cache manifest")
    if manifest.get("format") != FORMAT:
        raise DataError(
            f"cache manifest {mpath} is not a saekit activation cache manifest (format {manifest.get('format')!r})."
        )
    if not manifest.get("complete"):
        raise DataError(
            f"cache {path} is incomplete ({manifest.get('n_tokens', 0)} tokens written; "
            f"manifest {mpath} says "
            "complete=false); rerun `saekit cache` with the same arguments to finish it."
        )
    return manifest


class _Fill:
    """One pool buffer and the state of its consumption."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.size = 0
        self.order_np = np.empty(0, dtype=np.int64)
        self.pos = 0
        self.epoch = 0
        self.index = 0


class ActivationCache:
    """Shuffled, resumable batches from a disk cache written by ``build_cache``/``saekit cache``.

    hookpoint: a hookpoint name, or a pair ``(input, output)`` for transcoders (batches are
      then tuples ``(x, y)`` of the same tokens); None picks the only hookpoint of the cache.
    buffer_tokens: rows held in memory (halves: one consumed, one read ahead); a fill, the unit
      the mixing pool shuffles, is ``buffer_tokens // 2`` rows.
    chunk_tokens: rows read at once from one place of one shard (None: about 1 MiB per read,
      and at least 64 chunks per fill so consecutive rows come from many places).
    normalize: multiply rows by the manifest's ``norm_scale`` (E||x||^2 = d); the scale is
      ``self.norm_scale`` (or ``(scale_in, scale_out)`` for pairs) to fold into a dictionary.
    with_meta: also read token_ids, doc_ids and positions; ``self.last_meta`` then holds them
      for the last batch.
    """

    def __init__(
        self,
        path: str | Path,
        hookpoint: str | tuple[str, str] | list[str] | None = None,
        *,
        buffer_tokens: int = 1 << 18,
        seed: int = 0,
        chunk_tokens: int | None = None,
        normalize: bool = False,
        with_meta: bool = False,
        prefetch: bool = True,
        verify: bool = True,
        device: str | torch.device = "cpu",
        progress: bool | None = None,
    ):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        hps = self.manifest["hookpoints"]
        if hookpoint is None:
            if len(hps) != 1:
                raise ConfigError(
                    f"cache {self.path} holds several hookpoints ({', '.join(hps)}); "
                    "pass hookpoint= one of them "
                    "or an (input, output) pair."
                )
            hookpoint = next(iter(hps))
        keys = [hookpoint] if isinstance(hookpoint, str) else list(hookpoint)
        if len(keys) not in (1, 2):
            raise ConfigError(f"hookpoint must be one name or an (input, output) pair, got {hookpoint!r}.")
        for hp in keys:
            if hp not in hps:
                raise ConfigError(f"hookpoint {hp!r} is not in cache {self.path}; it holds {', '.join(hps)}.")
        self.hookpoints = keys
        self.paired = len(keys) == 2
        self.d_in = int(hps[keys[0]]["d"])
        self.d_out = int(hps[keys[-1]]["d"])
        self.n_tokens = int(self.manifest["n_tokens"])
        self.normalize = normalize
        scales = [float(hps[hp]["norm_scale"]) for hp in keys]
        self.norm_scale: float | tuple[float, float] = tuple(scales) if self.paired else scales[0]
        self._scales = scales if normalize else [1.0] * len(keys)
        self.with_meta = with_meta
        self.device = torch.device(device)
        self.seed = int(seed)

        if not isinstance(buffer_tokens, int) or buffer_tokens < 2:
            raise ConfigError(f"buffer_tokens must be an integer ≥ 2, got {buffer_tokens!r}.")
        self.fill_tokens = buffer_tokens // 2
        self.buffer_tokens = buffer_tokens
        shard_sizes = [int(s["n_tokens"]) for s in self.manifest["shards"]]
        if chunk_tokens is None:
            row_bytes = (
                sum(int(hps[hp]["d"]) for hp in keys) * torch.empty((), dtype=_dtype(self.manifest)).element_size()
            )
            chunk_tokens = max(1, min((1 << 20) // row_bytes, self.fill_tokens // 64, max(shard_sizes)))
        if not isinstance(chunk_tokens, int) or not 0 < chunk_tokens <= self.fill_tokens:
            raise ConfigError(
                f"chunk_tokens must be an integer in 1..buffer_tokens/2 ({self.fill_tokens}), got {chunk_tokens!r}."
            )
        self.chunk_tokens = chunk_tokens
        self._chunks = make_chunks(shard_sizes, chunk_tokens)
        self._shards = self._open_shards(verify, progress)

        self._keys = keys + (list(META_KEYS) if with_meta else [])
        self._epoch, self._offset = 0, 0  # position of the next row to emit
        self._plans: dict[int, EpochPlan] = {}
        self.last_meta: dict[str, torch.Tensor] | None = None
        self._waited = 0.0
        self._t_first: float | None = None
        self._prefetcher: Prefetcher | None = None
        self._prefetch = prefetch
        # two pools: one consumed, one read ahead. Rows land in file order; the consumer's
        # gather in the fill's random order is the batch's only copy after the read.
        self._pools = [self._alloc_pool() for _ in range(2)]
        self._cur: _Fill | None = None
        self._started = False
        self._hinted: tuple[tuple[int, int], list] | None = None  # (epoch, fill) hinted ahead, its layout
        _OPEN_READERS.add(self)

    # -- opening ----------------------------------------------------------------------------
    def _open_shards(self, verify: bool, progress: bool | None) -> list[ShardFile]:
        shards = []
        bar = token_bar(
            self.n_tokens if verify else None,
            "verify cache",
            disable=None if progress is None else not progress,
        )
        for rec in self.manifest["shards"]:
            f = self.path / rec["file"]
            shard = ShardFile(f, int(rec["bytes"]))
            for key in self.hookpoints:
                span = shard.spans.get(key)
                if span is None or span.shape[0] != rec["n_tokens"]:
                    raise DataError(
                        f"cache shard {f} does not hold {rec['n_tokens']} rows of {key!r} as the manifest says."
                    )
                width = int(self.manifest["hookpoints"][key]["d"])
                if span.shape[-1] != width:
                    raise DataError(
                        f"cache manifest {self.path / 'manifest.json'} gives {key!r} width {width} but shard {f} "
                        f"holds width {span.shape[-1]}; the manifest does not belong to these shards (rebuild the cache)."
                    )
            if verify and sha256_file(f) != rec["sha256"]:
                raise DataError(
                    f"cache shard {f} is corrupt: its SHA-256 does not match the manifest; rebuild the cache."
                )
            bar.update(rec["n_tokens"])
            shards.append(shard)
        bar.close()
        return shards

    def _alloc_pool(self) -> _Fill:
        sh = self._shards[0]
        tensors = {}
        for key in self._keys:
            span = sh.spans[key]
            tensors[key] = torch.empty((self.fill_tokens, *span.shape[1:]), dtype=span.dtype)
        return _Fill(tensors)

    # -- order ------------------------------------------------------------------------------
    def _plan(self, epoch: int) -> EpochPlan:
        plan = self._plans.get(epoch)
        if plan is None:
            self._plans = {e: p for e, p in self._plans.items() if e >= epoch - 1}  # keep memory flat
            plan = EpochPlan(self._chunks, self.fill_tokens, self.seed, epoch)
            self._plans[epoch] = plan
        return plan

    def _advise(self, layout: list[tuple[int, int, int, int]]) -> None:
        """Hint the kernel to read a fill's chunks in the background (all of them at once, so
        the disk serves many requests in parallel instead of one synchronous read at a time)."""
        ranges: dict[int, list[tuple[str, int, int]]] = {}
        for s, start, length, _ in layout:
            ranges.setdefault(s, []).extend((key, start, length) for key in self._keys)
        for s, shard_ranges in ranges.items():
            self._shards[s].advise_rows(shard_ranges)

    def _read_fill(self, epoch: int, index: int, fill: _Fill) -> _Fill:
        plan = self._plan(epoch)
        if self._hinted is not None and self._hinted[0] == (epoch, index):
            layout = self._hinted[1]
        else:  # the first fill after a (re)start: not hinted ahead
            layout = plan.read_layout(index)
            self._advise(layout)
        for s, start, length, pos in layout:
            for key in self._keys:
                self._shards[s].read_rows(key, start, fill.tensors[key][pos : pos + length])
        for s in {s for s, *_ in layout}:
            self._shards[s].close()  # keep the number of open files flat on caches with many shards
        # the next fill's disk reads then overlap this fill's consumption
        nxt = (epoch, index + 1) if index + 1 < plan.n_fills else (epoch + 1, 0)
        self._hinted = (nxt, self._plan(nxt[0]).read_layout(nxt[1]))
        self._advise(self._hinted[1])
        fill.size = int(plan.sizes[index])
        fill.order_np = plan.row_order(index).numpy()
        fill.epoch, fill.index, fill.pos = epoch, index, 0
        return fill

    def _fill_sequence(self, epoch: int, index: int) -> Iterator[tuple[int, int]]:
        while True:
            yield epoch, index
            index += 1
            if index == self._plan(epoch).n_fills:
                epoch, index = epoch + 1, 0

    # -- background prefetch ------------------------------------------------------------------
    def _start(self) -> None:
        epoch, offset = self._epoch, self._offset
        if offset >= self.n_tokens:
            epoch, offset = epoch + 1, 0
        index, within = self._plan(epoch).locate(offset)
        self._free: queue.Queue = queue.Queue()
        for p in self._pools:
            self._free.put(p)
        seq = self._fill_sequence(epoch, index)
        self._skip_first = within
        self._prefetcher = Prefetcher(
            lambda stop: self._fills(seq, stop), background=self._prefetch, name="saekit-cache-prefetch"
        )

    def _fills(self, seq: Iterator[tuple[int, int]], stop: threading.Event) -> Iterator[_Fill]:
        """Fills in order, each read into a pool the consumer has handed back."""
        for epoch, index in seq:
            pool = get_unless_stopped(self._free, stop)
            if pool is None:
                return
            yield self._read_fill(epoch, index, pool)

    def _next_fill(self) -> _Fill:
        if self._cur is not None:
            self._free.put(self._cur)
            self._cur = None
        fill = self._prefetcher.next()
        self._waited += self._prefetcher.last_wait
        if self._skip_first:
            fill.pos, self._skip_first = self._skip_first, 0
        self._cur = fill
        return fill

    def close(self) -> None:
        """Stop the prefetch thread (the reader can be used again; it restarts where it was)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
        for shard in self._shards:
            shard.close()
        self._cur = None
        self._started = False

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- the source interface -------------------------------------------------------------------
    def next_batch(self, batch_size: int, *, stop_at_epoch_end: bool = False) -> Batch:
        """The next ``batch_size`` rows (a Tensor [B, d], or (x, y) for a pair).

        Batches run across epoch boundaries unless ``stop_at_epoch_end``, in which case the
        last batch of an epoch may be shorter (and an empty batch means the epoch is over).
        """
        if not self._started:
            self._start()
            self._started = True
        if self._t_first is None:
            self._t_first = time.perf_counter()
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in self._keys}
        need = batch_size
        while need > 0:
            if self._offset >= self.n_tokens:
                if stop_at_epoch_end:
                    break
                self._epoch, self._offset = self._epoch + 1, 0
            fill = self._cur if self._cur is not None and self._cur.pos < self._cur.size else self._next_fill()
            take = min(need, fill.size - fill.pos, self.n_tokens - self._offset)
            idx = fill.order_np[fill.pos : fill.pos + take]
            for k in self._keys:  # a gather is a copy: the pool can go back to the reader thread
                parts[k].append(_gather_rows(fill.tensors[k], idx))
            fill.pos += take
            self._offset += take
            need -= take
        out = []
        for i, hp in enumerate(self.hookpoints):
            x = _join(parts[hp], (0, self.d_out if i else self.d_in), torch.float32)
            x = x.to(self.device, torch.float32, non_blocking=True)
            if self._scales[i] != 1.0:
                x = x * self._scales[i]
            out.append(x)
        if self.with_meta:
            self.last_meta = {k: _join(parts[k], (0,), None) for k in META_KEYS}
        return (out[0], out[1]) if self.paired else out[0]

    def batches(self, batch_size: int, epochs: float | None = None) -> Iterator[Batch]:
        """Iterate batches; ``epochs=None`` never ends, an integer stops at that epoch's end."""
        end_epoch = None if epochs is None else self._epoch + int(epochs)
        while end_epoch is None or self._epoch < end_epoch:
            batch = self.next_batch(batch_size, stop_at_epoch_end=end_epoch is not None)
            n = (batch[0] if self.paired else batch).shape[0]
            if n:
                yield batch
            if end_epoch is not None and self._offset >= self.n_tokens:
                self._epoch, self._offset = self._epoch + 1, 0

    iter_batches = batches  # the name saekit.training looks for

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(4096)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def wait_fraction(self) -> float:
        """Fraction of wall time since the first batch that the consumer spent waiting for reads."""
        if self._t_first is None:
            return 0.0
        return self._waited / max(time.perf_counter() - self._t_first, 1e-9)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with the same batches: the order is a pure function of these."""
        return {
            "epoch": self._epoch,
            "offset": self._offset,
            "seed": self.seed,
            "fill_tokens": self.fill_tokens,
            "chunk_tokens": self.chunk_tokens,
            "n_tokens": self.n_tokens,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "fill_tokens", "chunk_tokens", "n_tokens"):
            if int(state[key]) != getattr(self, key):
                raise ConfigError(
                    f"reader state has {key}={state[key]} but this reader has {getattr(self, key)}; "
                    "open the cache with the same seed, buffer_tokens and chunk_tokens to resume."
                )
        self.close()
        self._epoch, self._offset = int(state["epoch"]), int(state["offset"])

    # -- unshuffled access ----------------------------------------------------------------------
    def read_all(self, key: str | None = None) -> torch.Tensor:
        """All rows of one tensor (a hookpoint or a meta key) in cache order; for small caches."""
        key = key or self.hookpoints[0]
        parts = []
        for rec in self.manifest["shards"]:  # own file handles: the prefetch thread may be reading
            shard = ShardFile(self.path / rec["file"], int(rec["bytes"]))
            parts.append(shard.read_all(key))
            shard.close()
        return torch.cat(parts)

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        hp = " -> ".join(self.hookpoints)
        dtype = self.manifest["dtype"]
        return f"ActivationCache({str(self.path)!r}, {hp}, n_tokens={self.n_tokens}, dtype={dtype})"


def _gather_rows(pool: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """pool[idx] as a new tensor, gathered as raw bytes with numpy: one memcpy per row, on the
    calling thread only (torch's parallel index_select slows to a crawl when the cores are
    shared with the reader thread and other work), for any dtype (bfloat16 included)."""
    as_bytes = pool.view(torch.uint8).reshape(pool.shape[0], -1).numpy()
    out = torch.from_numpy(np.take(as_bytes, idx, axis=0))
    return out.view(pool.dtype).reshape(len(idx), *pool.shape[1:])


def _join(parts: list[torch.Tensor], empty_shape: tuple[int, ...], dtype: torch.dtype | None) -> torch.Tensor:
    """One tensor from the batch's parts (already copies, so a single part is used as it is)."""
    if not parts:
        return torch.empty(empty_shape, dtype=dtype or torch.long)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _dtype(manifest: dict[str, Any]) -> torch.dtype:
    from saekit.activations.shards import DTYPES

    return DTYPES[manifest["dtype"]]
