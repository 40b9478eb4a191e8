"""Localise a concept: rank units by how well their values separate concept from control positions.

Per unit, with a = values at concept positions (n_c of them) and b = values at control positions (n_k):

* AUROC = P(a > b) + ½ P(a = b) = (R_a - n_c (n_c + 1) / 2) / (n_c n_k), R_a the sum of a's ranks
  among all values (average ranks for ties). 1: the unit is higher on every concept token.
* Welch t = (mean a - mean b) / sqrt(var a / n_c + var b / n_k).

Units are ranked by AUROC, ties broken by t (a perfectly separating unit is common for a single-token
concept; t then prefers the one with the larger margin).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from saekit.editing.concepts import ConceptSet
from saekit.editing.units import Units, unit_values


def _subsample(values: torch.Tensor, cap: int, seed: int) -> torch.Tensor:
    if values.shape[0] <= cap:
        return values
    g = torch.Generator().manual_seed(seed)
    return values[torch.randperm(values.shape[0], generator=g)[:cap]]


def auroc_and_t(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC, Welch t) per column of concept values a [n_c, U] against control values b [n_k, U]."""
    n_c, n_k = a.shape[0], b.shape[0]
    auc = np.empty(a.shape[1])
    for s in range(0, a.shape[1], chunk):
        ranks = rankdata(np.concatenate([a[:, s : s + chunk], b[:, s : s + chunk]]), axis=0)
        auc[s : s + chunk] = (ranks[:n_c].sum(0) - n_c * (n_c + 1) / 2) / (n_c * n_k)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = a64.mean(0) - b64.mean(0)
    se = np.sqrt(a64.var(0, ddof=1) / n_c + b64.var(0, ddof=1) / n_k) if min(n_c, n_k) > 1 else np.zeros_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.sign(diff) * np.inf)
    return auc, np.nan_to_num(t, nan=0.0, posinf=1e30, neginf=-1e30)


def rank_units(auc: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Unit indices, best separating (highest AUROC, then highest t) first."""
    return np.lexsort((-t, -auc))


def localise(
    units: Units, concept: ConceptSet, top: int = 10, max_tokens: int = 20000, contexts: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Rank the units for ``concept``: AUROC and Welch t per unit, the ``top`` units with example contexts.

    Returns {"kind", "hook", "concept", "n_concept_tokens", "n_control_tokens", "ranking" (all unit
    indices, best first), "auroc", "t" (per unit, in unit order), "top": [{"unit", "auroc", "t",
    "mean_concept", "mean_control", "contexts"}]}.
    """
    a = _subsample(unit_values(units, concept.concept_tokens, concept.concept_mask), max_tokens, seed)
    b = _subsample(unit_values(units, concept.control_tokens, concept.control_mask), max_tokens, seed + 1)
    auc, t = auroc_and_t(a.numpy(), b.numpy())
    order = rank_units(auc, t)
    tops = []
    for u in order[:top]:
        u = int(u)
        tops.append(
            {
                "unit": u,
                "auroc": float(auc[u]),
                "t": float(t[u]),
                "mean_concept": float(a[:, u].mean()),
                "mean_control": float(b[:, u].mean()),
                "contexts": top_contexts(units, concept, u, contexts) if contexts else [],
            }
        )
    return {
        "kind": units.kind,
        "hook": units.hook,
        "concept": concept.name,
        "n_concept_tokens": int(a.shape[0]),
        "n_control_tokens": int(b.shape[0]),
        "ranking": [int(u) for u in order],
        "auroc": [float(x) for x in auc],
        "t": [float(x) for x in t],
        "top": tops,
    }


@torch.no_grad()
def top_contexts(units: Units, concept: ConceptSet, unit: int, n: int = 3, window: int = 10) -> list[dict]:
    """The ``n`` concept positions where ``unit`` is highest: {"value", "text"} with the token marked [[ ]]."""
    tokenizer = getattr(units.model, "tokenizer", None)
    toks, mask = concept.concept_tokens, concept.concept_mask
    vals = unit_values(units, toks, torch.ones_like(mask))[:, unit].reshape(toks.shape)
    vals = vals.masked_fill(~mask, float("-inf"))
    best = torch.topk(vals.flatten(), min(n, int(mask.sum()))).indices
    out = []
    for flat in best.tolist():
        r, p = divmod(flat, toks.shape[1])
        before, tok = toks[r, max(0, p - window) : p].tolist(), toks[r, p : p + 1].tolist()
        if tokenizer is not None:
            text = tokenizer.decode(before) + "[[" + tokenizer.decode(tok) + "]]"
        else:
            text = " ".join(map(str, before)) + f" [[{tok[0]}]]"
        out.append({"value": float(vals[r, p]), "text": text})
    return out
