"""The shuffled order of a disk cache: which rows come out in which order, per epoch and seed.

A cache of N rows is cut into *chunks* of ``chunk_tokens`` consecutive rows (a shard never
shares a chunk with another). Each epoch:

1. the list of all chunks of all shards is permuted (seed, epoch) - this permutes the shard
   order and the order within each shard at once, and lets one mixing pool draw from the whole
   cache instead of a few neighbouring shards;
2. the permuted chunks are grouped, in that order, into *fills* of ``fill_tokens //
   chunk_tokens`` chunks (at most ``fill_tokens`` rows);
3. a fill is read into the mixing pool and its rows are emitted in a random order
   (seed, epoch, fill).

Every row is emitted exactly once per epoch, memory holds two fills (one being read in the
background, one being consumed), and two consecutive rows come from ``fill_tokens /
chunk_tokens`` random places in the cache, so their document ids are nearly uncorrelated.
The order depends only on (seed, epoch, chunk_tokens, fill_tokens), so a position
(epoch, offset) is all a reader needs to resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def sub_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence), for torch generators."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


@dataclass(frozen=True)
class Chunks:
    """All chunks of a cache as flat arrays (about 16 bytes per chunk, however large the cache)."""

    shard: np.ndarray  # int32
    start: np.ndarray  # int64, first row inside the shard
    length: np.ndarray  # int32, rows (chunk_tokens, or fewer at a shard's end)
    chunk_tokens: int

    def __len__(self) -> int:
        return len(self.shard)


def make_chunks(shard_sizes: list[int], chunk_tokens: int) -> Chunks:
    shard, start, length = [], [], []
    for s, n in enumerate(shard_sizes):
        starts = np.arange(0, n, chunk_tokens, dtype=np.int64)
        shard.append(np.full(len(starts), s, dtype=np.int32))
        start.append(starts)
        length.append(np.minimum(chunk_tokens, n - starts).astype(np.int32))
    return Chunks(np.concatenate(shard), np.concatenate(start), np.concatenate(length), chunk_tokens)


class EpochPlan:
    """Chunk order and fill boundaries of one epoch: fill f is chunks ``[f*G, (f+1)*G)`` of the
    permuted list, with ``G = fill_tokens // chunk_tokens`` (so a fill never exceeds fill_tokens)."""

    def __init__(self, chunks: Chunks, fill_tokens: int, seed: int, epoch: int):
        self.seed, self.epoch, self.chunks = seed, epoch, chunks
        g = torch.Generator().manual_seed(sub_seed(seed, epoch))
        self.order = torch.randperm(len(chunks), generator=g).numpy()
        self.per_fill = max(1, fill_tokens // chunks.chunk_tokens)
        bounds = np.arange(0, len(chunks), self.per_fill)
        self.sizes = np.add.reduceat(chunks.length[self.order].astype(np.int64), bounds)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @property
    def n_fills(self) -> int:
        return len(self.sizes)

    def locate(self, offset: int) -> tuple[int, int]:
        """(fill index, offset inside it) of the row at ``offset`` in this epoch's order."""
        f = int(np.searchsorted(self.starts, offset, side="right") - 1)
        return f, int(offset - self.starts[f])

    def row_order(self, fill: int) -> torch.Tensor:
        """Permutation of the fill's rows (as laid out in the pool by ``read_layout``)."""
        g = torch.Generator().manual_seed(sub_seed(self.seed, self.epoch, fill, 1))
        return torch.randperm(int(self.sizes[fill]), generator=g)

    def read_layout(self, fill: int) -> list[tuple[int, int, int, int]]:
        """(shard, start, length, pool offset) of a fill's chunks, sorted by file position
        (sequential-ish disk reads)."""
        idx = self.order[fill * self.per_fill : (fill + 1) * self.per_fill]
        c = self.chunks
        idx = idx[np.lexsort((c.start[idx], c.shard[idx]))]
        lengths = c.length[idx].astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return list(zip(c.shard[idx].tolist(), c.start[idx].tolist(), lengths.tolist(), offsets.tolist(), strict=True))
