"""Scoring dictionary latents against known ground-truth labels (toy models, planted languages).

Everything works on a latent activation matrix `acts` [n, n_latents] (a latent fires when its
activation is > 0) and labels given either as integer-valued label vectors {name: [n]} (e.g.
"max token" with 64 values) or as binary indicators [n, n_labels]. No training happens here.

- purity of latent j for (label L, value v): P(L = v | j fires); recall: P(j fires | L = v);
  the explanation of a latent is the (L, v) whose indicator shares the most mutual information
  with the latent's firing indicator (so frequent values do not win by base rate alone).
- best-latent F1 per label and the MCC of a one-to-one (Hungarian) latent-label matching,
  as SAELens's SynthSAEBench scores synthetic vectors.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from saekit.errors import DataError


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)


def _binary_tables(active: torch.Tensor, indicators: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(both, fires, has_label, n): co-occurrence counts [L, M], latent counts [L], label counts [M]."""
    a, b = active.double(), indicators.double()
    return a.T @ b, a.sum(0), b.sum(0), float(len(a))


def binary_mutual_information(active: torch.Tensor, indicators: torch.Tensor) -> torch.Tensor:
    """MI in bits between each latent's firing [n, L] and each binary label [n, M] → [L, M]."""
    both, fires, has, n = _binary_tables(active, indicators)
    cells = [both, fires[:, None] - both, has[None] - both, n - fires[:, None] - has[None] + both]
    margins = [(fires[:, None], has[None]), (fires[:, None], n - has[None]), (n - fires[:, None], has[None])]
    margins.append((n - fires[:, None], n - has[None]))
    mi = torch.zeros_like(both)
    for joint, (ma, mb) in zip(cells, margins):
        p = joint / n
        mi += torch.where(p > 0, p * torch.log2(p * n * n / (ma * mb).clamp_min(1e-30)), torch.zeros_like(p))
    return mi.clamp_min(0)


def one_hot_labels(labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple[str, int]]]:
    """Integer labels {name: [n]} → binary indicators [n, Σ values] and their (name, value) list."""
    if not labels:
        raise DataError("no ground-truth labels were given; scoring needs data generated with labels.")
    cols, names = [], []
    for name, values in labels.items():
        uniq, inverse = torch.unique(values, return_inverse=True)
        cols.append(torch.nn.functional.one_hot(inverse, len(uniq)).bool())
        names.extend((name, int(v)) for v in uniq)
    return torch.cat(cols, 1), names


def explain_latents(acts: torch.Tensor, labels: dict[str, torch.Tensor]) -> list[dict]:
    """Per latent: the (label, value) that best explains its firing, with purity, recall and MI.

    Dead latents (never firing on these inputs) get label None."""
    _check_rows(acts, labels)
    active = acts > 0
    ind, names = one_hot_labels(labels)
    mi = binary_mutual_information(active, ind)
    both, fires, has, _ = _binary_tables(active, ind)
    best = mi.argmax(1)
    out = []
    for j in range(acts.shape[1]):
        if fires[j] == 0:
            out.append({"latent": j, "label": None, "value": None, "purity": 0.0, "recall": 0.0, "mi": 0.0})
            continue
        m = int(best[j])
        out.append(
            {
                "latent": j,
                "label": names[m][0],
                "value": names[m][1],
                "purity": float(both[j, m] / fires[j]),
                "recall": float(both[j, m] / has[m]),
                "mi": float(mi[j, m]),
                "frequency": float(fires[j] / len(acts)),
            }
        )
    return out


def dedicated_fraction(explanations: list[dict], label: str, values: list[int], min_purity: float = 0.9) -> float:
    """Fraction of `values` of `label` that some latent is dedicated to (explained by, purity ≥ min_purity)."""
    covered = {e["value"] for e in explanations if e["label"] == label and e["purity"] >= min_purity}
    return len(covered & set(values)) / max(1, len(values))


def _check_rows(acts: torch.Tensor, labels: dict[str, torch.Tensor]) -> None:
    for name, values in labels.items():
        if len(values) != len(acts):
            raise DataError(f"label {name!r} has {len(values)} rows but the activations have {len(acts)}; they must match.")


def mutual_information(x: torch.Tensor, y: torch.Tensor) -> float:
    """MI in bits between two integer-valued vectors of equal length."""
    _, xi = torch.unique(x, return_inverse=True)
    _, yi = torch.unique(y, return_inverse=True)
    joint = torch.zeros(int(xi.max()) + 1, int(yi.max()) + 1, dtype=torch.float64)
    joint.index_put_((xi, yi), torch.ones(len(xi), dtype=torch.float64), accumulate=True)
    joint /= joint.sum()
    return float(_entropy(joint.sum(1)) + _entropy(joint.sum(0)) - _entropy(joint.flatten()))


def entropy(x: torch.Tensor) -> float:
    _, counts = torch.unique(x, return_counts=True)
    return float(_entropy(counts.double() / counts.sum()))


def f1_matrix(active: torch.Tensor, indicators: torch.Tensor) -> torch.Tensor:
    """F1 [L, M] of each latent's firing as a detector of each binary label."""
    both, fires, has, _ = _binary_tables(active, indicators)
    return 2 * both / (fires[:, None] + has[None]).clamp_min(1)


def mcc_matrix(active: torch.Tensor, indicators: torch.Tensor) -> torch.Tensor:
    """Matthews correlation [L, M] between latent firing and binary labels (0 where undefined)."""
    both, fires, has, n = _binary_tables(active, indicators)
    num = n * both - fires[:, None] * has[None]
    den = (fires * (n - fires))[:, None].sqrt() * (has * (n - has))[None].sqrt()
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))


def label_recovery(acts: torch.Tensor, indicators: torch.Tensor) -> dict[str, np.ndarray]:
    """Per label: best latent F1 and its latent; MCC of the one-to-one (Hungarian) matching."""
    if indicators.ndim != 2 or len(indicators) != len(acts):
        raise DataError(f"label indicators must be [n, n_labels] with n = {len(acts)} rows, got {list(indicators.shape)}.")
    active, ind = acts > 0, indicators.bool()
    f1 = f1_matrix(active, ind)
    mcc = mcc_matrix(active, ind).numpy()
    rows, cols = linear_sum_assignment(mcc, maximize=True)
    matched = np.zeros(ind.shape[1])
    matched[cols] = mcc[rows, cols]
    return {"best_f1": f1.max(0).values.numpy(), "best_latent": f1.argmax(0).numpy(), "matched_mcc": matched}


def separating_label(child_of_sample: torch.Tensor, labels: dict[str, torch.Tensor]) -> tuple[str, float, float]:
    """The label that best separates samples among children: (name, I(child; label) in bits,
    that MI as a fraction of H(child))."""
    h = entropy(child_of_sample)
    scores = {name: mutual_information(child_of_sample, values) for name, values in labels.items()}
    name = max(scores, key=scores.get)
    return name, scores[name], scores[name] / h if h > 0 else 0.0


def split_tree(
    acts_small: torch.Tensor,
    acts_big: torch.Tensor,
    dec_small: torch.Tensor,
    dec_big: torch.Tensor,
    labels: dict[str, torch.Tensor],
    min_samples: int = 20,
) -> list[dict]:
    """Parents (small dictionary) → children (big dictionary, parent = nearest decoder row);
    for every parent with ≥ 2 live children, the label separating its children (conditional MI
    on the samples where a child fires, each assigned to its most active child)."""
    live = (acts_big > 0).sum(0) >= min_samples
    cos = torch.nn.functional.normalize(dec_big, dim=1) @ torch.nn.functional.normalize(dec_small, dim=1).T
    parent = cos.argmax(1)
    splits = []
    for p in torch.unique(parent[live]).tolist():
        children = torch.nonzero(live & (parent == p)).flatten()
        if len(children) < 2:
            continue
        sub = acts_big[:, children]
        rows = (sub > 0).any(1)
        if rows.sum() < min_samples:
            continue
        winner = children[sub[rows].argmax(1)]
        sub_labels = {k: v[rows] for k, v in labels.items()}
        name, mi, frac = separating_label(winner, sub_labels)
        values = {int(c): Counter(sub_labels[name][winner == c].tolist()).most_common(1)[0][0] for c in children.tolist()}
        splits.append(
            {"parent": p, "children": children.tolist(), "label": name, "mi": mi, "mi_fraction": frac, "child_values": values}
        )
    return splits


def direction_sharing(
    splits: list[dict], dec_small: torch.Tensor, dec_big: torch.Tensor, label: str | None = None, shuffles: int = 20, seed: int = 0
) -> dict:
    """Is the child-minus-parent direction for one separating-label value shared across parents?

    Mean cosine between directions of the same value under different parents, against the same
    statistic with values shuffled among the children (the baseline)."""
    if label is None:
        counts = Counter(s["label"] for s in splits)
        if not counts:
            return {"label": None, "same_value_cos": None, "shuffled_cos": None, "n_pairs": 0}
        label = counts.most_common(1)[0][0]
    dirs, values, parents = [], [], []
    unit_small, unit_big = torch.nn.functional.normalize(dec_small, dim=1), torch.nn.functional.normalize(dec_big, dim=1)
    for s in (s for s in splits if s["label"] == label):
        for c, v in s["child_values"].items():
            dirs.append(unit_big[c] - unit_small[s["parent"]])
            values.append(v)
            parents.append(s["parent"])
    if len(dirs) < 2:
        return {"label": label, "same_value_cos": None, "shuffled_cos": None, "n_pairs": 0}
    sims = torch.nn.functional.normalize(torch.stack(dirs), dim=1)
    sims = (sims @ sims.T).numpy()
    cross = np.asarray(parents)[:, None] != np.asarray(parents)[None]

    def mean_same(vals: np.ndarray) -> tuple[float, int]:
        mask = cross & (vals[:, None] == vals[None])
        return (float(sims[mask].mean()) if mask.any() else float("nan")), int(mask.sum() // 2)

    vals = np.asarray(values)
    same, n_pairs = mean_same(vals)
    rng = np.random.default_rng(seed)
    shuffled = [mean_same(rng.permutation(vals))[0] for _ in range(shuffles)]
    return {"label": label, "same_value_cos": same, "shuffled_cos": float(np.nanmean(shuffled)), "n_pairs": n_pairs}


def recovery_summary(acts: torch.Tensor, indicators: torch.Tensor, contextual: torch.Tensor, f1_at: float = 0.8) -> dict:
    """Label recovery split by label kind: per kind the fraction of labels whose best latent has
    F1 ≥ f1_at, the mean best F1 and the mean MCC of the one-to-one matching."""
    rec = label_recovery(acts, indicators)
    present = indicators.bool().any(0).numpy()
    out = {}
    for kind, mask in (("token_level", ~contextual.numpy()), ("contextual", contextual.numpy())):
        m = mask & present
        out[kind] = {
            "n_labels": int(m.sum()),
            "recovered_fraction": float((rec["best_f1"][m] >= f1_at).mean()) if m.any() else None,
            "mean_best_f1": float(rec["best_f1"][m].mean()) if m.any() else None,
            "mean_matched_mcc": float(rec["matched_mcc"][m].mean()) if m.any() else None,
        }
    return out
