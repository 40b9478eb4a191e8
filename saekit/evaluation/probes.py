"""Structure probes: opposing decoder pairs, feature splitting across widths, synthetic ground truth.

* ``opposing_pairs``: latent pairs whose decoder directions point (nearly) opposite ways
  (cos < -0.9 and < -0.7); such pairs show one feature split by sign (e.g. a ±-symmetric basis).
* ``feature_splitting``: each latent of a wide dictionary is assigned to its closest latent of a
  narrow one; a narrow latent with ≥ 2 close children (cos ≥ threshold) has split.
* ``toy_sparse_data`` / ``ground_truth_recovery``: data made of known sparse features, so a
  training pipeline can be checked (MMCS to the true features) before its results are trusted.
* ``hierarchical_data`` / ``groundtruth_scores`` (from ``saekit.evaluation.groundtruth``): a world
  with parent/child features, correlated firing and Zipfian probabilities, scored by MCC, F1,
  uniqueness and absorption.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saekit.evaluation.groundtruth import SyntheticWorld, groundtruth_scores, hierarchical_data
from saekit.evaluation.matching import _unit_rows, cosine_matrix, decoder_of, mmcs

__all__ = [
    "SyntheticWorld",
    "feature_splitting",
    "ground_truth_recovery",
    "groundtruth_scores",
    "hierarchical_data",
    "opposing_pairs",
    "toy_sparse_data",
]


def opposing_pairs(sae: Any, thresholds: tuple[float, ...] = (-0.9, -0.7)) -> dict[str, int]:
    """Number of latent pairs i < j with cos(d_i, d_j) below each threshold."""
    w = _unit_rows(decoder_of(sae))
    out = {}
    for t in thresholds:
        count = 0
        for s in range(0, w.shape[0], 4096):  # blocks keep memory at 4096 x n_latents
            c = w[s : s + 4096] @ w.T
            rows = torch.arange(s, s + c.shape[0])[:, None]
            upper = torch.arange(w.shape[0])[None, :] > rows
            count += int(((c < t) & upper).sum())
        out[f"opposing_pairs_lt_{abs(t):g}"] = count
    return out


def feature_splitting(narrow: Any, wide: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Group the wide dictionary's latents under the narrow latent each is closest to.

    A child counts when its cosine to the parent is ≥ threshold. ``split_fraction`` is the
    fraction of narrow latents with ≥ 2 children; ``parent_child_sum_cos`` the mean cosine between
    a split parent and the (unweighted) sum of its children's directions.
    """
    wn, ww = _unit_rows(decoder_of(narrow)), _unit_rows(decoder_of(wide))
    c = cosine_matrix(ww, wn)  # [n_wide, n_narrow]
    best, parent = c.max(dim=1)
    children: list[list[int]] = [[] for _ in range(wn.shape[0])]
    for child, (p, cos) in enumerate(zip(parent.tolist(), best.tolist())):
        if cos >= threshold:
            children[p].append(child)
    sizes = np.array([len(ch) for ch in children])
    split = [i for i, ch in enumerate(children) if len(ch) >= 2]
    sum_cos = [
        float(torch.nn.functional.cosine_similarity(ww[children[i]].sum(0), wn[i], dim=0)) for i in split
    ]
    return {
        "threshold": threshold,
        "children": children,
        "group_size_counts": np.bincount(sizes).tolist(),
        "split_fraction": float(len(split) / max(1, len(children))),
        "unmatched_wide_fraction": float((best < threshold).double().mean()),
        "parent_child_sum_cos": float(np.mean(sum_cos)) if sum_cos else float("nan"),
    }


def toy_sparse_data(
    n_samples: int,
    d: int,
    n_features: int,
    p_active: float = 0.02,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [n_samples, d], true features [n_features, d] unit rows): x = Σ c_i f_i with sparse c.

    Each feature is on with probability p_active, with magnitude Uniform(0.5, 1.5), as in the toy
    models of Sharkey et al. (2022).
    """
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_features, d, generator=g)
    feats = feats / feats.norm(dim=1, keepdim=True)
    on = torch.rand(n_samples, n_features, generator=g) < p_active
    mags = 0.5 + torch.rand(n_samples, n_features, generator=g)
    return (on * mags) @ feats, feats


def ground_truth_recovery(sae: Any, true_features: torch.Tensor, threshold: float = 0.9) -> dict[str, float]:
    """How well a dictionary recovered known features: MMCS and the fraction found at cos ≥ threshold."""
    c = cosine_matrix(true_features, decoder_of(sae))
    best = c.max(dim=1).values
    m = mmcs(true_features, decoder_of(sae))
    return {
        "mmcs_true_to_learned": m["mmcs_a_to_b"],
        "mmcs_learned_to_true": m["mmcs_b_to_a"],
        "recovered_fraction": float((best >= threshold).double().mean()),
        "threshold": threshold,
    }
