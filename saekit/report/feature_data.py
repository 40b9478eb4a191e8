"""What the feature browser shows about one dictionary, computed from streamed activations.

``collect(sae, handle, tokens)`` runs the model over ``tokens`` in batches, encodes each batch and
feeds the codes to a fixed-size ``LatentStats`` (top contexts, quantile samples, histogram) while
keeping the non-zero codes as sparse triples for the n-gram explanations (memory ∝ tokens × L0).
``index_rows`` and ``latent_details`` turn the result into the browser's JSON records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from saekit.evaluation.autointerp import SparseActs, autointerp
from saekit.progress import token_bar
from saekit.report.latent_stats import LatentStats

# abstractness needs several passes over dense codes; skipped above this many (token, latent) cells
ABSTRACTNESS_MAX_CELLS = 1_000_000_000
# index columns, in the order each row lists them
INDEX_COLUMNS = [
    "latent",
    "density",
    "max",
    "f1",
    "precision",
    "recall",
    "entropy",
    "abstractness",
    "explanation",
    "top",
]


@dataclass
class DictionaryData:
    name: str
    sae: Any
    tokens: torch.Tensor  # [n_rows, n_ctx]
    stats: LatentStats
    sparse: SparseActs  # every non-zero code (BOS excluded)
    tokenizer: Any
    W_U: torch.Tensor | None
    interp: dict[int, dict] = field(default_factory=dict)
    abstractness: np.ndarray | None = None
    logits: dict[int, dict] = field(default_factory=dict)
    neighbours: tuple[torch.Tensor, torch.Tensor] | None = None
    matches: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.flat = self.tokens.reshape(-1).numpy()  # numpy: fast element access while writing pages


def unembedding(handle: Any) -> torch.Tensor | None:
    """The model's unembedding [d_model, d_vocab], or None when it has none we can read."""
    model = handle.model
    if hasattr(model, "W_U"):
        return model.W_U.detach().float().cpu()
    out = getattr(model, "get_output_embeddings", lambda: None)()
    return out.weight.detach().float().cpu().T if out is not None else None


@torch.no_grad()
def collect(
    name: str, sae: Any, handle: Any, hook: str, tokens: torch.Tensor, batch_rows: int = 8, seed: int = 0, **kw: Any
) -> DictionaryData:
    """Stream ``tokens`` through the model and the dictionary; statistics in fixed memory."""
    from saekit.activations import HookpointReader

    reader = HookpointReader(handle, [hook])
    p = next(sae.parameters())
    n_rows, n_ctx = tokens.shape
    stats = LatentStats(sae.W_dec.shape[0], seed=seed, **kw)
    pos, lat, val = [], [], []
    bar = token_bar(tokens.numel(), f"browse {name}")
    for s in range(0, n_rows, batch_rows):
        batch = tokens[s : s + batch_rows]
        x = reader(batch.to(reader.device))[hook]
        z = sae.encode(x.reshape(-1, x.shape[-1]).to(p.device, p.dtype)).float().cpu()
        z = z.reshape(batch.shape[0], n_ctx, -1)
        z[:, 0] = 0  # BOS: fires on everything, says nothing
        stats.update(z, s * n_ctx)
        nz = z.reshape(-1, z.shape[-1]).nonzero()
        pos.append((nz[:, 0] + s * n_ctx).numpy().astype(np.int32))
        lat.append(nz[:, 1].numpy().astype(np.int32))
        val.append(z.reshape(-1, z.shape[-1])[nz[:, 0], nz[:, 1]].numpy())
        bar.update(batch.numel())
    bar.close()
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)
    sparse = SparseActs.from_triples(
        tokens.numel(), stats.n_latents, cat(pos, np.int32), cat(lat, np.int32), cat(val, np.float32)
    )
    return DictionaryData(name, sae, tokens, stats.freeze(), sparse, handle.tokenizer, unembedding(handle))


def _split(sparse: SparseActs, cut: int) -> tuple[SparseActs, SparseActs]:
    """Entries before flat position ``cut`` and (shifted to start at 0) those from it on."""
    lat = np.repeat(np.arange(sparse.n_latents), np.diff(sparse.indptr))
    a = sparse.positions < cut
    first = SparseActs.from_triples(cut, sparse.n_latents, sparse.positions[a], lat[a], sparse.values[a])
    b = ~a
    second = SparseActs.from_triples(
        sparse.n_tokens - cut, sparse.n_latents, sparse.positions[b] - cut, lat[b], sparse.values[b]
    )
    return first, second


def explain(data: DictionaryData, held_out: float = 0.2) -> None:
    """n-gram explanations learnt on the first rows, precision/recall/F1 on the last ``held_out``."""
    n_rows, n_ctx = data.tokens.shape
    n_test = max(1, int(round(n_rows * held_out))) if n_rows > 1 else 0
    cut = (n_rows - n_test) * n_ctx
    train, test = _split(data.sparse, cut)
    tok_train, tok_test = data.tokens[: n_rows - n_test], data.tokens[n_rows - n_test :]
    if n_test == 0:
        test, tok_test = train, tok_train
    alive = [i for i in range(train.n_latents) if train.indptr[i + 1] > train.indptr[i]]
    res = autointerp(train, tok_train, test, tok_test, latents=alive, tokenizer=data.tokenizer)
    data.interp = {r["latent"]: r for r in res["latents"]}


def add_abstractness(data: DictionaryData) -> None:
    """1 - R² of each latent's activation from its token id (saekit.evaluation.abstractness), when cheap."""
    from saekit.evaluation.abstractness import abstractness, previous_token_ids

    n_tok, n_lat = data.sparse.n_tokens, data.sparse.n_latents
    if n_tok * n_lat > ABSTRACTNESS_MAX_CELLS or n_tok < 4:
        return
    lat = np.repeat(np.arange(n_lat), np.diff(data.sparse.indptr))
    order = np.argsort(data.sparse.positions, kind="stable")
    pos_s, lat_s, val_s = data.sparse.positions[order], lat[order], data.sparse.values[order]
    step = 16384

    def chunks():
        for r0 in range(0, n_tok, step):
            r1 = min(n_tok, r0 + step)
            a, b = np.searchsorted(pos_s, [r0, r1])
            dense = torch.zeros(r1 - r0, n_lat)
            dense[torch.from_numpy(pos_s[a:b] - r0), torch.from_numpy(lat_s[a:b])] = torch.from_numpy(val_s[a:b])
            yield dense

    cur, prev = previous_token_ids(data.tokens)
    data.abstractness = abstractness(chunks, cur, prev)["current"]


@torch.no_grad()
def add_logits(data: DictionaryData, k: int = 10, block: int = 1024) -> None:
    """Top promoted and suppressed tokens of W_dec · W_U per latent (when W_dec lives in d_model)."""
    W_dec = data.sae.W_dec.detach().float().cpu()
    if data.W_U is None or W_dec.shape[1] != data.W_U.shape[0]:
        return
    k = min(k, data.W_U.shape[1])
    for s in range(0, W_dec.shape[0], block):
        eff = W_dec[s : s + block] @ data.W_U
        pv, pi = eff.topk(k, dim=1)
        nv, ni = (-eff).topk(k, dim=1)
        for j in range(eff.shape[0]):
            data.logits[s + j] = {
                "up": list(zip(pi[j].tolist(), pv[j].tolist())),
                "down": list(zip(ni[j].tolist(), (-nv[j]).tolist())),
            }


def _unit(w: torch.Tensor) -> torch.Tensor:
    w = w.detach().float().cpu()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def nearest(a: torch.Tensor, b: torch.Tensor, k: int, exclude_self: bool, block: int = 1024):
    """For every row of a: the k rows of b with the highest cosine (values [n, k], indices [n, k])."""
    a, b = _unit(a), _unit(b)
    k = min(k, b.shape[0] - (1 if exclude_self else 0))
    vals, idx = [], []
    for s in range(0, a.shape[0], block):
        sims = a[s : s + block] @ b.T
        if exclude_self:
            r = torch.arange(sims.shape[0])
            sims[r, r + s] = float("-inf")
        v, i = sims.topk(max(k, 0), dim=1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals).numpy(), torch.cat(idx).numpy()


def _num(x: float, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def index_rows(data: DictionaryData, decode) -> list[list]:
    """One row per latent, columns INDEX_COLUMNS."""
    st = data.stats
    rows = []
    for i in range(st.n_latents):
        it = data.interp.get(i, {})
        top = [int(t) for t in _top_tokens(data, i)]
        rows.append(
            [
                i,
                _num(float(st.count[i]) / max(st.n_tokens, 1)),
                _num(float(st.max[i])),
                _num(it.get("f1")),
                _num(it.get("precision")),
                _num(it.get("recall")),
                _num(it.get("token_entropy")),
                _num(float(data.abstractness[i])) if data.abstractness is not None else None,
                it.get("explanation", ""),
                " ".join(decode(t) for t in top),
            ]
        )
    return rows


def _top_tokens(data: DictionaryData, i: int, n: int = 3) -> list[int]:
    """The distinct tokens at a latent's highest activations, most active first."""
    out: list[int] = []
    for p in data.stats.top.positions[i].tolist():
        if p >= 0 and int(data.flat[p]) not in out:
            out.append(int(data.flat[p]))
        if len(out) == n:
            break
    return out


def _context(data: DictionaryData, kept, i: int, j: int) -> dict:
    st = data.stats
    n_ctx = data.tokens.shape[1]
    row, col = divmod(int(kept.positions[i, j]), n_ctx)
    lo, hi = max(0, col - st.before), min(n_ctx, col + st.after + 1)
    win = kept.windows[i, j, lo - (col - st.before) : hi - (col - st.before)]
    return {
        "row": row,
        "pos": col,
        "value": _num(float(kept.values[i, j])),
        "focus": col - lo,
        "tokens": data.flat[row * n_ctx + lo : row * n_ctx + hi].tolist(),
        "acts": [_num(a) or 0.0 for a in win.tolist()],
    }


def latent_details(data: DictionaryData, i: int, n_quantile: int = 8) -> dict:
    """Everything the latent's panel shows (token ids, not text; the page decodes with vocab)."""
    st = data.stats
    top = [_context(data, st.top, i, j) for j in range(st.top.keys.shape[1]) if st.top.positions[i, j] >= 0]
    have = [j for j in range(st.samples.keys.shape[1]) if st.samples.positions[i, j] >= 0]
    have.sort(key=lambda j: -float(st.samples.values[i, j]))
    picks = sorted({round(q * (len(have) - 1) / max(n_quantile - 1, 1)) for q in range(n_quantile)}) if have else []
    samples = []
    for r in picks:
        c = _context(data, st.samples, i, have[r])
        c["quantile"] = _num(1 - r / max(len(have) - 1, 1), 2)  # share of the sample below it
        samples.append(c)
    it = data.interp.get(i, {})
    out = {
        "latent": i,
        "count": int(st.count[i]),
        "density": _num(float(st.count[i]) / max(st.n_tokens, 1)),
        "mean": _num(float(st.sum[i]) / max(int(st.count[i]), 1)),
        "max": _num(float(st.max[i])),
        "top": top,
        "samples": samples,
        "hist": {"edges_top": st.hist_edges(i)[-1], "counts": st.hist[i].tolist()},
        "explanation": {
            k: (_num(it[k]) if isinstance(it.get(k), float) else it.get(k))
            for k in ("explanation", "patterns", "precision", "recall", "f1", "n_fired", "n_predicted")
        },
        "entropy": _num(it.get("token_entropy")),
        "logits": {d: [[t, _num(v)] for t, v in pairs] for d, pairs in data.logits.get(i, {}).items()},
    }
    if data.neighbours is not None:
        v, ix = data.neighbours
        out["neighbours"] = [[int(j), _num(float(c))] for c, j in zip(v[i], ix[i])]
    out["matches"] = {name: [int(ix[i]), _num(float(v[i]))] for name, (v, ix) in data.matches.items()}
    return out


def used_tokens(data: DictionaryData) -> set[int]:
    """Token ids any page of this dictionary shows (contexts and logit effects)."""
    st = data.stats
    n_ctx = data.tokens.shape[1]
    ids: set[int] = set()
    for kept in (st.top, st.samples):
        pos = kept.positions[kept.positions >= 0]
        row, col = pos // n_ctx, pos % n_ctx
        for off in range(-st.before, st.after + 1):
            c = np.clip(col + off, 0, n_ctx - 1)
            ids.update(np.unique(data.flat[row * n_ctx + c]).tolist())
    for eff in data.logits.values():
        ids.update(t for pairs in eff.values() for t, _ in pairs)
    return ids
