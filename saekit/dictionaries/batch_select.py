"""Batch-level top-k selection (BatchTopK SAEs and crosscoders): the k·B largest scores of a batch.

``batch_topk_select`` returns the kept entries as a row-ordered sparse code (CSR: one run of
entries per row, rows holding different numbers of latents), which the sparse decoder
(``embedding_bag`` with offsets) and the sparse encoder backward (``saekit.kernels.pairs_encode``)
read directly; nothing of size [B, n_latents] is built after the selection.

Why two stages: ``scores.flatten().topk(k·B)`` is one selection over B·n values that torch runs
on one thread (2.2 s of a 2.7 s step at B = 4096, n = 4096 on the dev CPU); a per-row top-m runs
over rows in parallel. The global k·B-th value t is found among each row's m best; the result is
exact when no row's m-th best exceeds t (then every value above t is a candidate), otherwise m
doubles and the selection repeats. Ties at t are broken in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

THRESHOLD_EMA = 0.99  # decay of the running inference-threshold estimate


@dataclass
class BatchSelection:
    """The kept entries, row-major: entry p is (rows[p], cols[p]) with score scores[p]."""

    rows: torch.Tensor  # [P] int64, non-decreasing
    cols: torch.Tensor  # [P] int64 latent indices
    scores: torch.Tensor  # [P] the selected scores (no grad)
    counts: torch.Tensor  # [B] entries per row
    n_latents: int

    @property
    def offsets(self) -> torch.Tensor:
        """[B] start of each row's run (embedding_bag's offsets)."""
        return torch.cumsum(self.counts, 0) - self.counts

    @property
    def crow(self) -> torch.Tensor:
        """[B + 1] CSR row pointers."""
        crow = torch.zeros(self.counts.numel() + 1, dtype=torch.int64, device=self.counts.device)
        torch.cumsum(self.counts, 0, out=crow[1:])
        return crow

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """[B, n_latents] with ``values`` [P] at the kept positions, zeros elsewhere."""
        out = values.new_zeros(self.counts.numel(), self.n_latents)
        return out.index_put((self.rows, self.cols), values)


@torch.no_grad()
def batch_topk_select(scores: torch.Tensor, k: int) -> BatchSelection:
    """The min(k·B, B·n) largest entries of ``scores`` [B, n] over the whole batch."""
    B, n = scores.shape
    n_keep = min(k * B, B * n)
    m = min(n, 2 * k)
    cand, idx = scores.topk(m, dim=-1, sorted=True)  # [B, m], each row descending
    depth = torch.full((B,), m, device=scores.device)  # candidates held per row
    while True:
        t = cand.flatten().topk(n_keep, sorted=False).values.min()
        last = cand.gather(1, (depth - 1)[:, None]).squeeze(1)
        short = (last > t) & (depth < n)  # rows that may hold values above t beyond their candidates
        if not bool(short.any()):
            break  # every value above t is a candidate: the selection is exact
        cand, idx, depth = _deepen(scores, cand, idx, depth, short.nonzero().squeeze(1))
    above = cand > t
    ties = cand == t
    need = n_keep - int(above.sum())
    tie_rank = torch.cumsum(ties.flatten().long(), 0).view_as(ties)
    keep = above | (ties & (tie_rank <= need))  # a prefix of each (sorted) row
    counts = keep.sum(1)
    flat = keep.flatten().nonzero().squeeze(1)
    rows = torch.div(flat, keep.shape[1], rounding_mode="floor")
    return BatchSelection(rows, idx.flatten()[flat], cand.flatten()[flat], counts, n)


def _deepen(scores, cand, idx, depth, bad):
    """Twice the candidates for rows ``bad`` only (few rows: most hold about k); others pad with -inf."""
    m2 = min(scores.shape[1], 2 * int(depth[bad].max()))
    c2, i2 = scores[bad].topk(m2, dim=-1, sorted=True)
    width = max(m2, cand.shape[1])
    pad = width - cand.shape[1]
    cand = torch.nn.functional.pad(cand, (0, pad), value=float("-inf"))
    idx = torch.nn.functional.pad(idx, (0, pad))
    cand[bad, :m2], idx[bad, :m2] = c2, i2
    depth = depth.clone()
    depth[bad] = m2
    return cand, idx, depth


@torch.no_grad()
def update_threshold_ema(threshold: torch.Tensor, updates: torch.Tensor, kept: torch.Tensor) -> None:
    """EMA of the smallest positive kept value: the per-token threshold used at inference."""
    kept = kept[kept > 0]
    if kept.numel() == 0:
        return
    smallest = kept.min().to(threshold.dtype)
    if int(updates) == 0:
        threshold.fill_(smallest)
    else:
        threshold.mul_(THRESHOLD_EMA).add_((1 - THRESHOLD_EMA) * smallest)
    updates.add_(1)
