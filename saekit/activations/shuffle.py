"""The shuffled order of a disk cache: which rows come out in which order, per epoch and seed.

A cache of N rows is cut into *chunks* of ``chunk_tokens`` consecutive rows (a shard never
shares a chunk with another). Each epoch:

1. the list of all chunks of all shards is permuted (seed, epoch) - this permutes the shard
   order and the order within each shard at once, and lets one mixing pool draw from the whole
   cache instead of a few neighbouring shards;
2. the permuted chunks are grouped greedily into *fills* of at most ``fill_tokens`` rows;
3. a fill is read into the mixing pool and its rows are emitted in a random order
   (seed, epoch, fill).

Every row is emitted exactly once per epoch, memory holds three fills (one consumed, one read
in the background, one scratch the reads land in before the shuffled copy), and two consecutive rows come from ``fill_tokens /
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
class Chunk:
    shard: int
    start: int
    length: int


def make_chunks(shard_sizes: list[int], chunk_tokens: int) -> list[Chunk]:
    chunks = []
    for s, n in enumerate(shard_sizes):
        for start in range(0, n, chunk_tokens):
            chunks.append(Chunk(s, start, min(chunk_tokens, n - start)))
    return chunks


class EpochPlan:
    """Chunk order and fill boundaries of one epoch."""

    def __init__(self, chunks: list[Chunk], fill_tokens: int, seed: int, epoch: int):
        self.seed, self.epoch = seed, epoch
        g = torch.Generator().manual_seed(sub_seed(seed, epoch))
        order = torch.randperm(len(chunks), generator=g).tolist()
        self.fills: list[list[Chunk]] = []
        current: list[Chunk] = []
        size = 0
        for i in order:
            c = chunks[i]
            if size + c.length > fill_tokens and current:
                self.fills.append(current)
                current, size = [], 0
            current.append(c)
            size += c.length
        if current:
            self.fills.append(current)
        self.sizes = [sum(c.length for c in f) for f in self.fills]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def locate(self, offset: int) -> tuple[int, int]:
        """(fill index, offset inside it) of the row at ``offset`` in this epoch's order."""
        f = int(np.searchsorted(self.starts, offset, side="right") - 1)
        return f, int(offset - self.starts[f])

    def row_order(self, fill: int) -> torch.Tensor:
        """Permutation of the fill's rows (as laid out in the pool by ``read_layout``)."""
        g = torch.Generator().manual_seed(sub_seed(self.seed, self.epoch, fill, 1))
        return torch.randperm(self.sizes[fill], generator=g)

    def read_layout(self, fill: int) -> list[tuple[Chunk, int]]:
        """Chunks of a fill sorted by file position (sequential-ish disk reads), with pool offsets."""
        out, pos = [], 0
        for c in sorted(self.fills[fill], key=lambda c: (c.shard, c.start)):
            out.append((c, pos))
            pos += c.length
        return out
