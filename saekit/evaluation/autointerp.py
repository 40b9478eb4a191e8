"""Offline auto-interpretation: top contexts, n-gram explanations scored on held-out text, token
entropy and logit lens. No LLM is needed.

The explainer follows Neuron-to-Graph / n-gram tries (Foote et al. 2023; as used by Gao et al.
2024): for each of a latent's top-activating (and some randomly chosen activating) training
positions, keep the *shortest* token n-gram ending at that position (n ≤ max_n) whose firing
precision over the whole training split is ≥ min_precision and which occurs ≥ min_count times.
The set of kept n-grams is the explanation; it predicts "fires here" wherever one of its n-grams
ends. Scored on held-out tokens against the latent's actual firing (activation > 0 by default):
precision, recall and F1 per latent.

Activations are held sparse (token, latent, value) triples, so a 32k-latent dictionary on 100k
tokens costs memory proportional to L0, not to n_latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from saekit.errors import DataError
from saekit.evaluation.metrics import n_latents_of


@dataclass
class SparseActs:
    """Non-zero activations of a dictionary on a token list, grouped by latent (CSR by latent)."""

    n_tokens: int
    n_latents: int
    indptr: np.ndarray  # [n_latents + 1]
    positions: np.ndarray  # flat token index (row * n_ctx + pos), grouped by latent
    values: np.ndarray

    def of(self, latent: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.indptr[latent], self.indptr[latent + 1]
        return self.positions[s:e], self.values[s:e]

    @classmethod
    def from_triples(cls, n_tokens: int, n_latents: int, pos, lat, val) -> SparseActs:
        order = np.lexsort((pos, lat))
        pos, lat, val = pos[order], lat[order], val[order]
        indptr = np.zeros(n_latents + 1, dtype=np.int64)
        np.cumsum(np.bincount(lat, minlength=n_latents), out=indptr[1:])
        return cls(n_tokens, n_latents, indptr, pos.astype(np.int64), val.astype(np.float32))

    def restrict(self, keep: np.ndarray) -> SparseActs:
        """Only the entries at token positions where ``keep`` [n_tokens] (bool) is True."""
        lat = np.repeat(np.arange(self.n_latents), np.diff(self.indptr))
        ok = keep[self.positions]
        return SparseActs.from_triples(self.n_tokens, self.n_latents, self.positions[ok], lat[ok], self.values[ok])

    @classmethod
    def from_dense(cls, z: torch.Tensor) -> SparseActs:
        z = z.reshape(-1, z.shape[-1])
        nz = (z != 0).nonzero()
        val = z[nz[:, 0], nz[:, 1]]
        return cls.from_triples(z.shape[0], z.shape[1], nz[:, 0].numpy(), nz[:, 1].numpy(), val.float().numpy())


@torch.no_grad()
def collect_acts(sae: torch.nn.Module, x: torch.Tensor, batch_size: int = 4096) -> SparseActs:
    """Encode activations x [..., d_in] (flattened in token order) into SparseActs."""
    x = x.reshape(-1, x.shape[-1])
    p = next(sae.parameters())
    pos, lat, val = [], [], []
    for s in range(0, x.shape[0], batch_size):
        z = sae.encode(x[s : s + batch_size].to(p.device, p.dtype)).float().cpu()
        nz = (z != 0).nonzero()
        pos.append(nz[:, 0].numpy() + s)
        lat.append(nz[:, 1].numpy())
        val.append(z[nz[:, 0], nz[:, 1]].numpy())
    n_latents = n_latents_of(sae)
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)
    return SparseActs.from_triples(x.shape[0], n_latents, cat(pos, np.int64), cat(lat, np.int64), cat(val, np.float32))


class NgramIndex:
    """Ids of the n-grams (n = 1..max_n) ending at every token position, within each row."""

    def __init__(self, tokens: torch.Tensor, max_n: int = 3) -> None:
        if tokens.ndim != 2:
            raise DataError(f"tokens must be [n_seq, n_ctx], got shape {tuple(tokens.shape)}.")
        t = tokens.long().numpy()
        self.n_seq, self.n_ctx = t.shape
        self.flat = t.reshape(-1)
        self.base = int(t.max()) + 1 if t.size else 1
        if self.base**max_n >= 2**62:
            raise DataError(f"vocabulary too large ({self.base}) for {max_n}-gram ids; use a smaller max_n.")
        self.max_n = max_n
        self.ids: list[np.ndarray] = []  # ids[n-1][flat position], -1 where the n-gram leaves the row
        self.uniq: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        col = np.tile(np.arange(self.n_ctx), self.n_seq)
        acc = np.zeros_like(t)
        for n in range(1, max_n + 1):
            shifted = np.full_like(t, -1)
            shifted[:, n - 1 :] = t[:, : self.n_ctx - n + 1]  # the token n-1 places back
            acc = np.where(shifted >= 0, acc + shifted * self.base ** (n - 1), -1) if n > 1 else t.copy()
            ids = acc.reshape(-1).copy()
            ids[col < n - 1] = -1
            self.ids.append(ids)
            u, c = np.unique(ids[ids >= 0], return_counts=True)
            self.uniq.append(u)
            self.counts.append(c)

    def count(self, n: int, ids: np.ndarray) -> np.ndarray:
        u, c = self.uniq[n - 1], self.counts[n - 1]
        i = np.clip(np.searchsorted(u, ids), 0, max(0, len(u) - 1))
        return np.where((len(u) > 0) & (u[i] == ids), c[i], 0) if len(u) else np.zeros(len(ids), np.int64)


@dataclass
class Explanation:
    latent: int
    patterns: dict[int, np.ndarray]  # n -> sorted n-gram ids (ids in the training index's base)
    base: int

    def tokens(self) -> list[list[int]]:
        out = []
        for n, ids in sorted(self.patterns.items()):
            for gid in ids.tolist():
                out.append([(gid // self.base ** (n - 1 - j)) % self.base for j in range(n)])
        return out

    def text(self, tokenizer: Any = None, limit: int = 8) -> str:
        pats = self.tokens()
        if not pats:
            return "(no explanation)"
        if tokenizer is None:
            shown = [" ".join(map(str, p)) for p in pats[:limit]]
        else:
            shown = [repr(tokenizer.decode(p)) for p in pats[:limit]]
        more = f" (+{len(pats) - limit} more)" if len(pats) > limit else ""
        return " | ".join(shown) + more

    def predict(self, index: NgramIndex) -> np.ndarray:
        """Boolean [n_tokens] of where the explanation says the latent fires."""
        hit = np.zeros(index.n_seq * index.n_ctx, dtype=bool)
        for n, ids in self.patterns.items():
            if n > index.max_n or not len(ids):
                continue
            hit |= _rebase_isin(index, n, ids, self.base)
        return hit


def _rebase_isin(index: NgramIndex, n: int, ids: np.ndarray, base: int) -> np.ndarray:
    """Which positions of ``index`` end an n-gram of ``ids`` (ids written in another base)."""
    if base != index.base:  # re-express patterns in the held-out index's base
        toks = np.stack([(ids // base ** (n - 1 - j)) % base for j in range(n)], 1)
        if (toks >= index.base).any():
            keep = (toks < index.base).all(1)
            toks = toks[keep]
        ids = (toks * (index.base ** np.arange(n - 1, -1, -1))).sum(1) if len(toks) else np.zeros(0, np.int64)
    return np.isin(index.ids[n - 1], ids)


def explain_latent(
    latent: int,
    acts: SparseActs,
    index: NgramIndex,
    n_top: int = 50,
    n_random: int = 50,
    min_precision: float = 0.7,
    min_count: int = 3,
    fire_threshold: float = 0.0,
    seed: int = 0,
) -> Explanation:
    """Learn the n-gram explanation of one latent from its training activations."""
    pos, val = acts.of(latent)
    fired = val > fire_threshold * (val.max() if len(val) else 0.0)
    pos, val = pos[fired], val[fired]
    patterns: dict[int, set[int]] = {}
    if len(pos) == 0:
        return Explanation(latent, {}, index.base)
    order = np.argsort(-val, kind="stable")
    chosen = order[:n_top]
    rest = order[n_top:]
    if len(rest) and n_random:
        rng = np.random.default_rng(seed + latent)
        chosen = np.concatenate([chosen, rng.choice(rest, size=min(n_random, len(rest)), replace=False)])
    # precision of every n-gram that ends at a firing position, over the whole training split
    precision: list[tuple[np.ndarray, np.ndarray]] = []
    for n in range(1, index.max_n + 1):
        g = index.ids[n - 1][pos]
        u, fires = np.unique(g[g >= 0], return_counts=True)
        occ = index.count(n, u)
        precision.append((u, np.where(occ >= min_count, fires / np.maximum(occ, 1), 0.0)))
    for p in pos[chosen]:
        for n in range(1, index.max_n + 1):
            gid = index.ids[n - 1][p]
            if gid < 0:
                break
            u, prec = precision[n - 1]
            i = np.searchsorted(u, gid)
            if prec[i] >= min_precision:
                patterns.setdefault(n, set()).add(int(gid))
                break
    # a longer pattern whose suffix is already kept adds nothing: drop it
    for n in sorted(patterns):
        for m in range(1, n):
            if m in patterns:
                suf = np.array(sorted(patterns[n])) % index.base**m
                keep = ~np.isin(suf, np.array(sorted(patterns[m])))
                patterns[n] = set(np.array(sorted(patterns[n]))[keep].tolist())
    return Explanation(latent, {n: np.array(sorted(s), dtype=np.int64) for n, s in patterns.items() if s}, index.base)


def score_explanation(expl: Explanation, acts: SparseActs, index: NgramIndex) -> dict[str, float]:
    """Precision, recall and F1 of an explanation's predictions on held-out tokens."""
    pos, val = acts.of(expl.latent)
    actual = np.zeros(index.n_seq * index.n_ctx, dtype=bool)
    actual[pos[val > 0]] = True
    pred = expl.predict(index)
    tp = int((pred & actual).sum())
    n_pred, n_act = int(pred.sum()), int(actual.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_act if n_act else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_fired": n_act, "n_predicted": n_pred}


def token_entropy(acts: SparseActs, tokens: torch.Tensor, latent: int) -> dict[str, float]:
    """Entropy (bits) of the token at a latent's firing positions, weighted by activation.

    0 bits = the latent fires on one token only (typical of random-weight models).
    """
    pos, val = acts.of(latent)
    if len(pos) == 0:
        return {"token_entropy": float("nan"), "top_token_share": float("nan")}
    toks = tokens.reshape(-1).numpy()[pos]
    u, inv = np.unique(toks, return_inverse=True)
    w = np.bincount(inv, weights=val.astype(np.float64))
    p = w / w.sum()
    nz = p[p > 0]
    return {"token_entropy": float(-(nz * np.log2(nz)).sum()), "top_token_share": float(p.max())}


def logit_lens(direction: torch.Tensor, W_U: torch.Tensor, k: int = 8) -> tuple[list[int], list[float]]:
    """Top tokens of W_U · d: the tokens a decoder direction promotes if read off directly."""
    logits = direction.float() @ W_U.float()
    vals, idx = logits.topk(min(k, logits.shape[0]))
    return idx.tolist(), vals.tolist()


def top_contexts(
    acts: SparseActs, tokens: torch.Tensor, latent: int, n: int = 8, before: int = 10, after: int = 3
) -> list[dict[str, Any]]:
    """The latent's top-activating positions with their token window and per-token activations."""
    pos, val = acts.of(latent)
    n_ctx = tokens.shape[1]
    flat = tokens.reshape(-1)
    act_at = dict(zip(pos.tolist(), val.tolist()))
    out = []
    for i in np.argsort(-val, kind="stable")[:n]:
        p = int(pos[i])
        row, col = divmod(p, n_ctx)
        lo, hi = max(0, col - before), min(n_ctx, col + after + 1)
        span = range(row * n_ctx + lo, row * n_ctx + hi)
        out.append(
            {
                "row": row,
                "pos": col,
                "value": float(val[i]),
                "tokens": [int(flat[q]) for q in span],
                "acts": [float(act_at.get(q, 0.0)) for q in span],
                "focus": col - lo,
            }
        )
    return out


def _summary(values: list[float]) -> dict[str, float]:
    v = np.array([x for x in values if x == x], dtype=np.float64)
    if not len(v):
        return {"mean": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "n": int(len(v))}


def autointerp(
    acts_train: SparseActs,
    tokens_train: torch.Tensor,
    acts_test: SparseActs,
    tokens_test: torch.Tensor,
    latents: list[int] | None = None,
    tokenizer: Any = None,
    W_dec: torch.Tensor | None = None,
    W_U: torch.Tensor | None = None,
    max_n: int = 3,
    min_precision: float = 0.7,
    min_count: int = 3,
    n_top: int = 50,
    n_random: int = 50,
    n_contexts: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Explain each latent on the training tokens and score it on the held-out tokens.

    latents: which latents (default: every latent that fired on the training tokens). W_dec and
    W_U (the unembedding [d_model, d_vocab]) add logit-lens top tokens when W_dec's rows live in
    the residual stream. n_contexts > 0 adds that many top held-out contexts per latent.
    Returns per-latent records and summary distributions (F1, precision, recall, token entropy).
    """
    if acts_train.n_tokens != tokens_train.numel() or acts_test.n_tokens != tokens_test.numel():
        raise DataError("activations and tokens differ in length; pass the tokens the activations were computed on.")
    train_index = NgramIndex(tokens_train, max_n)
    test_index = NgramIndex(tokens_test, max_n)
    if latents is None:
        latents = [i for i in range(acts_train.n_latents) if acts_train.indptr[i + 1] > acts_train.indptr[i]]
    lens = W_dec is not None and W_U is not None and W_dec.shape[1] == W_U.shape[0]
    records = []
    for i in latents:
        expl = explain_latent(i, acts_train, train_index, n_top, n_random, min_precision, min_count, seed=seed)
        rec: dict[str, Any] = {
            "latent": int(i),
            "explanation": expl.text(tokenizer),
            "patterns": expl.tokens(),
        }
        rec.update(score_explanation(expl, acts_test, test_index))
        rec.update(token_entropy(acts_train, tokens_train, i))
        rec["density_train"] = float((acts_train.indptr[i + 1] - acts_train.indptr[i]) / acts_train.n_tokens)
        if lens:
            ids, _ = logit_lens(W_dec[i].detach().cpu(), W_U.detach().cpu())
            rec["logit_lens"] = ids
            if tokenizer is not None:
                rec["logit_lens_text"] = [tokenizer.decode([t]) for t in ids]
        if n_contexts:
            rec["contexts"] = top_contexts(acts_test, tokens_test, i, n_contexts)
        records.append(rec)
    scored = [r for r in records if r["n_fired"] > 0]  # F1 is undefined for a latent silent on held-out text
    return {
        "settings": {"max_n": max_n, "min_precision": min_precision, "min_count": min_count, "n_top": n_top},
        "n_latents_explained": len(records),
        "f1": _summary([r["f1"] for r in scored]),
        "precision": _summary([r["precision"] for r in scored]),
        "recall": _summary([r["recall"] for r in scored]),
        "token_entropy": _summary([r["token_entropy"] for r in records]),
        "f1_values": [r["f1"] for r in scored],
        "token_entropy_values": [r["token_entropy"] for r in records if not math.isnan(r["token_entropy"])],
        "latents": records,
    }


def grid_from_cache(cache: Any, hookpoint: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token ids [n_rows, n_ctx], activations [n_rows, n_ctx, d], present [n_rows, n_ctx]) from a cache.

    Uses the token ids and in-row positions the activation layer records beside every row (read
    in cache order): a new row starts where the position stops increasing. Positions the cache
    left out (BOS) get the BOS id and zero activations, and ``present`` False.
    """
    from saekit.activations import ActivationCache

    if not isinstance(cache, ActivationCache):
        cache = ActivationCache(cache, hookpoint, prefetch=False)
    key = hookpoint or cache.hookpoints[0]
    x = cache.read_all(key).float()
    token_ids = cache.read_all("token_ids").long()
    pos = cache.read_all("positions").long()
    new_row = torch.ones_like(pos, dtype=torch.bool)
    new_row[1:] = pos[1:] <= pos[:-1]
    row = torch.cumsum(new_row.long(), 0) - 1
    n_ctx = int(cache.manifest.get("n_ctx") or int(pos.max()) + 1)
    fill = (cache.manifest.get("fingerprint") or {}).get("bos_token_id")
    n_rows = int(row[-1]) + 1 if len(row) else 0
    tokens = torch.full((n_rows, n_ctx), int(fill) if fill is not None else 0, dtype=torch.long)
    acts = torch.zeros(n_rows, n_ctx, x.shape[-1])
    present = torch.zeros(n_rows, n_ctx, dtype=torch.bool)
    tokens[row, pos] = token_ids
    acts[row, pos] = x
    present[row, pos] = True
    return tokens, acts, present


def autointerp_from_caches(
    sae: torch.nn.Module,
    train_cache: Any,
    test_cache: Any,
    hookpoint: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``autointerp`` on two activation caches (explained on the first, scored on the second).

    hookpoint: the dictionary's input hookpoint in the caches (default the dictionary's hook_name).
    """
    hookpoint = hookpoint or getattr(getattr(sae, "cfg", None), "hook_name", None) or None
    out = []
    for cache in (train_cache, test_cache):
        tokens, acts, present = grid_from_cache(cache, hookpoint)
        sparse = collect_acts(sae, acts).restrict(present.reshape(-1).numpy())
        out += [sparse, tokens]
    kwargs.setdefault("W_dec", sae.W_dec)
    return autointerp(out[0], out[1], out[2], out[3], **kwargs)
