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
    while True:
        cand, idx = scores.topk(m, dim=-1, sorted=True)  # [B, m], each row descending
        t = cand.flatten().topk(n_keep, sorted=False).values.min()
        if m == n or bool((cand[:, -1] <= t).all()):
            break  # every value above t is among the candidates: the selection is exact
        m = min(n, 2 * m)
    above = cand > t
    ties = cand == t
    need = n_keep - int(above.sum())
    tie_rank = torch.cumsum(ties.flatten().long(), 0).view_as(ties)
    keep = above | (ties & (tie_rank <= need))  # a prefix of each (sorted) row
    counts = keep.sum(1)
    rows = torch.repeat_interleave(torch.arange(B, device=scores.device), counts)
    return BatchSelection(rows, idx[keep], cand[keep], counts, n)


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
