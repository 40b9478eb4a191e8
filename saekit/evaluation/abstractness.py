"""Abstractness: how little of a latent's activation the token ids alone explain.

Per latent, ``1 - R²`` of its activation predicted from the current token id alone: the
prediction for a token is that token's mean activation over one half of the held-out tokens
(the *fit* half, a random half chosen by ``split_seed``), scored on the other half. A token
never seen in the fit half is predicted by the fit half's global mean. The same with the last
two token ids (previous + current): an unseen pair falls back to the current token's mean, then
to the global mean.

A token-level latent (its activation a function of the current token) scores near 0; a latent
that carries context the current token does not give scores near 1. Heap et al. (2025) found that
SAEs on random-weights transformers learn such token-level latents, which classic auto-interp
scores barely tell apart, so this is the axis a random control must fail.

Everything is accumulated per token id with ``index_add_`` (a scatter-add), over row chunks and
blocks of latents, so no [n_tokens, n_latents] tensor beyond the caller's own is built and the
per-token tables stay under ``max_table_mb``. The out-of-sample squared error is expanded per
token id (Σ(a - m_t)² = Σa² - 2 Σ_t m_t S_t + Σ_t n_t m_t², with S_t and n_t the scoring half's
sum and count for token t), which needs one pass over the activations per block of latents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Union

import numpy as np
import torch

from saekit.errors import ConfigError, DataError

Acts = Union[torch.Tensor, np.ndarray, Sequence[torch.Tensor], Callable[[], Iterable[torch.Tensor]]]

_ROW_CHUNK = 65536


def previous_token_ids(tokens: torch.Tensor, first: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``tokens`` [n_seq, n_ctx] into (current ids, previous ids), each [n_seq * n_ctx].

    The first position of every row has no previous token in the row: its previous id is
    ``first`` (-1, a key of its own). Rows are the flattening order of activations [n_seq, n_ctx, d].
    """
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2:
        raise ConfigError(f"previous_token_ids expects token ids [n_seq, n_ctx], got shape {tuple(tokens.shape)}.")
    prev = torch.full_like(tokens, first)
    prev[:, 1:] = tokens[:, :-1]
    return tokens.reshape(-1), prev.reshape(-1)


def abstractness(
    acts: Acts,
    token_ids: torch.Tensor,
    prev_token_ids: torch.Tensor | None = None,
    *,
    split_seed: int = 0,
    max_table_mb: float = 256.0,
) -> dict[str, Any]:
    """Per-latent ``1 - R²`` of the activation predicted from token ids, and its median over alive latents.

    acts: [N, n_latents] (tensor or array), or the same rows in chunks: a list of [n_i, n_latents]
      tensors, or a function returning a fresh iterator of them (it is called once per block of
      latents). token_ids: [N] current token id of each row. prev_token_ids: [N] id of the token
      before it (-1 where none; see ``previous_token_ids``); without it the last-two score is None.

    Returns ``current`` and ``last_two`` (float64 arrays [n_latents], NaN for latents that do not
    vary on the scoring half; values are clipped to [0, 1], 1 meaning the token ids predict no
    better than a constant), their medians over alive latents ``median_current`` and
    ``median_last_two``, the ``alive`` mask, ``n_alive``, ``n_fit`` and ``n_score``.
    """
    token_ids = _ids(token_ids, "token_ids")
    n = token_ids.numel()
    if prev_token_ids is not None:
        prev_token_ids = _ids(prev_token_ids, "prev_token_ids", allow_negative=True)
        if prev_token_ids.numel() != n:
            raise ConfigError(f"prev_token_ids has {prev_token_ids.numel()} entries, token_ids {n}; give one per row.")
    if n < 4:
        raise DataError(f"abstractness needs at least 4 tokens (two halves), got {n}.")
    chunks, n_latents = _chunk_source(acts, n)
    fit = _fit_mask(n, split_seed)
    keys = _Keys(token_ids, prev_token_ids, fit)
    per_col = 2 * keys.n_uni + (2 * keys.n_bi if keys.bi is not None else 0) + 8
    block = max(1, int(max_table_mb * 2**20 // (8 * per_col)))
    current = np.full(n_latents, np.nan)
    last_two = np.full(n_latents, np.nan) if keys.bi is not None else None
    for c0 in range(0, n_latents, block):
        c1 = min(n_latents, c0 + block)
        # rows per piece: the float64 copies of a piece (about 3 of them) stay within the same budget
        row_cap = max(1, int(max_table_mb * 2**20 // (8 * 3 * (c1 - c0))))
        cur, two = _score_block(chunks, c0, c1, keys, fit, row_cap)
        current[c0:c1] = cur
        if last_two is not None:
            last_two[c0:c1] = two
    alive = ~np.isnan(current)
    return {
        "current": current,
        "last_two": last_two,
        "median_current": _median(current[alive]),
        "median_last_two": _median(last_two[alive]) if last_two is not None else None,
        "alive": alive,
        "n_alive": int(alive.sum()),
        "n_fit": int(fit.sum()),
        "n_score": int(n - fit.sum()),
    }


def _median(x: np.ndarray) -> float | None:
    return float(np.median(x)) if x.size else None


def _ids(x: Any, name: str, allow_negative: bool = False) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ConfigError(f"{name} must hold integer token ids, got dtype {t.dtype}.")
    t = t.reshape(-1).long()
    if t.numel() and int(t.min()) < (-1 if allow_negative else 0):
        raise ConfigError(f"{name} must be token ids >= {-1 if allow_negative else 0}, found {int(t.min())}.")
    return t


def _chunk_source(acts: Acts, n: int) -> tuple[Callable[[], Iterable[torch.Tensor]], int]:
    """A function yielding [rows, n_latents] chunks in row order, and n_latents; checks the row count."""
    if isinstance(acts, (torch.Tensor, np.ndarray)):
        dense = torch.as_tensor(acts)
        if dense.ndim != 2:
            raise ConfigError(f"acts must be [n_tokens, n_latents], got shape {tuple(dense.shape)}.")
        if dense.shape[0] != n:
            raise ConfigError(f"acts has {dense.shape[0]} rows but token_ids has {n}; give one token id per row.")
        return (lambda: (dense[i : i + _ROW_CHUNK] for i in range(0, n, _ROW_CHUNK))), dense.shape[1]
    if callable(acts):
        make = acts
    elif isinstance(acts, Sequence):
        make = lambda: iter(acts)
    else:
        raise ConfigError("acts must be a [N, n_latents] tensor, a list of chunks or a function returning chunks.")
    shapes = [tuple(c.shape) for c in make()]
    if not shapes or any(len(s) != 2 or s[1] != shapes[0][1] for s in shapes):
        raise ConfigError(f"acts chunks must all be [rows, n_latents] with one n_latents, got shapes {shapes[:4]}.")
    if sum(s[0] for s in shapes) != n:
        raise ConfigError(f"acts chunks hold {sum(s[0] for s in shapes)} rows but token_ids has {n}.")
    return make, shapes[0][1]


def _fit_mask(n: int, seed: int) -> torch.Tensor:
    """A random half of the rows (floor(n/2)) that fits the per-token means; the rest scores them."""
    g = torch.Generator().manual_seed(int(seed))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=g)[: n // 2]] = True
    return mask


class _Keys:
    """Compact per-row keys: current token (0..n_uni-1) and (previous, current) pair (0..n_bi-1)."""

    def __init__(self, cur: torch.Tensor, prev: torch.Tensor | None, fit: torch.Tensor) -> None:
        uniq, self.uni = torch.unique(cur, return_inverse=True)
        self.n_uni = uniq.numel()
        self.bi, self.n_bi, self.bi_to_uni = None, 0, None
        if prev is not None:
            pair = (prev + 1) * self.n_uni + self.uni  # prev + 1 >= 0: -1 ("none") is a key of its own
            uniq_pair, self.bi = torch.unique(pair, return_inverse=True)
            self.n_bi = uniq_pair.numel()
            self.bi_to_uni = uniq_pair % self.n_uni
        self.fit_cnt_uni = torch.bincount(self.uni[fit], minlength=self.n_uni).double()
        self.score_cnt_uni = torch.bincount(self.uni[~fit], minlength=self.n_uni).double()
        if self.bi is not None:
            self.fit_cnt_bi = torch.bincount(self.bi[fit], minlength=self.n_bi).double()
            self.score_cnt_bi = torch.bincount(self.bi[~fit], minlength=self.n_bi).double()


def _pieces(chunks, c0: int, c1: int, row_cap: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, float64 activations of latents c0:c1) in row order, at most row_cap rows at a time."""
    row = 0
    for chunk in chunks():
        chunk = torch.as_tensor(chunk)
        for r0 in range(0, chunk.shape[0], row_cap):
            a = chunk[r0 : r0 + row_cap, c0:c1].double()
            yield slice(row, row + a.shape[0]), a
            row += a.shape[0]


def _score_block(chunks, c0: int, c1: int, keys: _Keys, fit: torch.Tensor, row_cap: int):
    """1 - R² of latents c0:c1 from the current token and from the last two tokens (one pass)."""
    sums: dict[str, torch.Tensor] = {}
    for rows, a in _pieces(chunks, c0, c1, row_cap):
        if not sums:
            sums = _zero_tables(keys, c1 - c0, a.device)
        f = fit[rows].to(a.device)
        a_fit, a_score = a[f], a[~f]
        uni = keys.uni[rows].to(a.device)
        sums["fit_uni"].index_add_(0, uni[f], a_fit)
        sums["score_uni"].index_add_(0, uni[~f], a_score)
        if keys.bi is not None:
            bi = keys.bi[rows].to(a.device)
            sums["fit_bi"].index_add_(0, bi[f], a_fit)
            sums["score_bi"].index_add_(0, bi[~f], a_score)
        sums["fit_total"] += a_fit.sum(0)
        sums["score_total"] += a_score.sum(0)
        sums["score_sq"] += (a_score * a_score).sum(0)
    n_fit, n_score = float(fit.sum()), float((~fit).sum())
    dev = sums["score_sq"].device
    sst = sums["score_sq"] - sums["score_total"] ** 2 / n_score
    global_mean = sums["fit_total"] / n_fit
    pred_uni = _predict(sums["fit_uni"], keys.fit_cnt_uni.to(dev), global_mean)
    current = _one_minus_r2(sums["score_sq"], sst, pred_uni, sums["score_uni"], keys.score_cnt_uni.to(dev))
    if keys.bi is None:
        return current, None
    pred_bi = _predict(sums["fit_bi"], keys.fit_cnt_bi.to(dev), pred_uni[keys.bi_to_uni.to(dev)])
    last_two = _one_minus_r2(sums["score_sq"], sst, pred_bi, sums["score_bi"], keys.score_cnt_bi.to(dev))
    return current, last_two


def _zero_tables(keys: _Keys, width: int, device: torch.device) -> dict[str, torch.Tensor]:
    z = lambda rows: torch.zeros(rows, width, dtype=torch.float64, device=device)
    t = {"fit_uni": z(keys.n_uni), "score_uni": z(keys.n_uni)}
    if keys.bi is not None:
        t.update(fit_bi=z(keys.n_bi), score_bi=z(keys.n_bi))
    t.update(fit_total=torch.zeros(width, dtype=torch.float64, device=device))
    t.update(score_total=torch.zeros_like(t["fit_total"]), score_sq=torch.zeros_like(t["fit_total"]))
    return t


def _predict(fit_sum: torch.Tensor, fit_cnt: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Per-key fit-half mean; keys unseen in the fit half take ``fallback`` ([width] or [keys, width])."""
    seen = fit_cnt > 0
    mean = fit_sum / fit_cnt.clamp_min(1)[:, None]
    return torch.where(seen[:, None], mean, fallback.expand_as(mean))


def _one_minus_r2(score_sq, sst, pred, score_sum, score_cnt) -> np.ndarray:
    """Σ(a - pred)² / Σ(a - ā)² on the scoring half, from per-key sums; NaN where the latent is constant."""
    sse = score_sq - 2 * (pred * score_sum).sum(0) + (score_cnt[:, None] * pred * pred).sum(0)
    # a latent constant on the scoring half (dead there) has no variance to explain
    alive = sst > 1e-12 * score_sq.clamp_min(1e-300)
    ratio = (sse / sst.clamp_min(1e-300)).clamp(0.0, 1.0)
    return torch.where(alive, ratio, torch.full_like(ratio, float("nan"))).cpu().numpy()
