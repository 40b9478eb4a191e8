"""Comparing two dictionaries: decoder/encoder cosine matching, shared fraction, activation correlation.

* ``mmcs``: mean max cosine similarity (Sharkey et al. 2022), in both directions.
* ``hungarian``: one-to-one matching that maximises the summed cosine
  (scipy.optimize.linear_sum_assignment); ``shared_fraction(t)`` is the fraction of the smaller
  dictionary's latents whose partner has cosine ≥ t.
* ``activation_correlation``: Pearson correlation of matched latents' activations on shared tokens.
* ``chance``: the same figures for two independent random Gaussian dictionaries of the same shapes,
  the level an unrelated pair of dictionaries reaches.

The noise floor of a cross-variant comparison is the same comparison between two seeds of one
variant (see ``saekit.pipeline``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from saekit.errors import DataError

THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.0, 1.0, 21))


def _unit_rows(w: torch.Tensor) -> torch.Tensor:
    w = w.detach().double().cpu()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of ``a`` [n_a, d] with every row of ``b`` [n_b, d] -> [n_a, n_b] (float64)."""
    if a.shape[1] != b.shape[1]:
        raise DataError(
            f"dictionaries live in different spaces (d = {a.shape[1]} vs {b.shape[1]}); "
            "they cannot be matched."
        )
    return _unit_rows(a) @ _unit_rows(b).T


def mmcs(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean max cosine similarity: a→b (each row of a to its best row of b), b→a and their mean."""
    c = cosine_matrix(a, b)
    ab = float(c.max(dim=1).values.mean())
    ba = float(c.max(dim=0).values.mean())
    return {"mmcs_a_to_b": ab, "mmcs_b_to_a": ba, "mmcs": (ab + ba) / 2}


def hungarian(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching maximising total cosine: (rows of a, matched rows of b, their cosines)."""
    c = cosine_matrix(a, b).numpy()
    rows, cols = linear_sum_assignment(c, maximize=True)
    return rows, cols, c[rows, cols]


def shared_fraction(
    matched_cos: np.ndarray, n: int, thresholds: tuple[float, ...] = THRESHOLDS
) -> list[float]:
    """Fraction of ``n`` latents whose one-to-one partner has cosine ≥ t, for each threshold t."""
    matched_cos = np.asarray(matched_cos)
    return [float((matched_cos >= t - 1e-12).sum() / n) for t in thresholds]


def decoder_of(sae: Any) -> torch.Tensor:
    return sae.W_dec if isinstance(sae, torch.nn.Module) else sae


def encoder_of(sae: Any) -> torch.Tensor:
    return sae.W_enc.T  # W_enc [d_in, n_latents] -> rows are latents


def compare_weights(
    a: torch.Tensor, b: torch.Tensor, thresholds: tuple[float, ...] = THRESHOLDS
) -> dict[str, Any]:
    """MMCS, Hungarian matching and the shared-fraction curve of two weight matrices (rows = latents)."""
    rows, cols, cos = hungarian(a, b)
    n = min(a.shape[0], b.shape[0])
    out = mmcs(a, b)
    out.update(
        {
            "hungarian_mean_cos": float(cos.mean()),
            "thresholds": list(thresholds),
            "shared_fraction": shared_fraction(cos, n, thresholds),
            "matched_cos": cos.tolist(),
            "perm_a": rows.tolist(),
            "perm_b": cols.tolist(),
        }
    )
    return out


def chance_level(
    n_a: int, n_b: int, d: int, seed: int = 0, thresholds: tuple[float, ...] = THRESHOLDS
) -> dict[str, Any]:
    """The comparison figures for two independent random Gaussian dictionaries of these shapes."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n_a, d, generator=g, dtype=torch.float64)
    b = torch.randn(n_b, d, generator=g, dtype=torch.float64)
    out = compare_weights(a, b, thresholds)
    return {k: out[k] for k in ("mmcs", "hungarian_mean_cos", "shared_fraction", "thresholds")}


class _CorrAccumulator:
    """Running sums for Pearson correlation of paired columns (za[:, i], zb[:, j])."""

    def __init__(self, pairs_a: torch.Tensor, pairs_b: torch.Tensor) -> None:
        self.ia, self.ib = pairs_a, pairs_b
        k = len(pairs_a)
        self.n = 0
        self.sa = torch.zeros(k, dtype=torch.float64)
        self.sb = torch.zeros(k, dtype=torch.float64)
        self.saa = torch.zeros(k, dtype=torch.float64)
        self.sbb = torch.zeros(k, dtype=torch.float64)
        self.sab = torch.zeros(k, dtype=torch.float64)

    def update(self, za: torch.Tensor, zb: torch.Tensor) -> None:
        a = za[:, self.ia].double().cpu()
        b = zb[:, self.ib].double().cpu()
        self.n += a.shape[0]
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.saa += (a * a).sum(0)
        self.sbb += (b * b).sum(0)
        self.sab += (a * b).sum(0)

    def result(self) -> torch.Tensor:
        n = self.n
        cov = self.sab - self.sa * self.sb / n
        va = self.saa - self.sa**2 / n
        vb = self.sbb - self.sb**2 / n
        denom = (va * vb).sqrt()
        # a latent that never varies on these tokens (dead) has no defined correlation: NaN
        return torch.where(denom > 1e-18, cov / denom.clamp_min(1e-300), torch.full_like(cov, float("nan")))


@torch.no_grad()
def activation_correlation(
    sae_a: torch.nn.Module,
    sae_b: torch.nn.Module,
    x_a: torch.Tensor,
    x_b: torch.Tensor | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Pearson correlation of matched latents' activations on the same tokens.

    x_a, x_b: each dictionary's input activations on one shared token list (x_b = x_a when both
    dictionaries read the same model). pairs: (latents of a, latents of b); default the Hungarian
    decoder matching.
    """
    x_b = x_a if x_b is None else x_b
    x_a = x_a.reshape(-1, x_a.shape[-1])
    x_b = x_b.reshape(-1, x_b.shape[-1])
    if x_a.shape[0] != x_b.shape[0]:
        raise DataError(
            "activation correlation needs the same tokens for both dictionaries "
            f"({x_a.shape[0]} vs {x_b.shape[0]} rows)."
        )
    if pairs is None:
        rows, cols, _ = hungarian(decoder_of(sae_a), decoder_of(sae_b))
        pairs = (rows, cols)
    acc = _CorrAccumulator(torch.as_tensor(pairs[0]), torch.as_tensor(pairs[1]))
    pa, pb = next(sae_a.parameters()), next(sae_b.parameters())
    for s in range(0, x_a.shape[0], batch_size):
        za = sae_a.encode(x_a[s : s + batch_size].to(pa.device, pa.dtype))
        zb = sae_b.encode(x_b[s : s + batch_size].to(pb.device, pb.dtype))
        acc.update(za, zb)
    corr = acc.result()
    valid = corr[~corr.isnan()]
    return {
        "act_corr_mean": float(valid.mean()) if len(valid) else float("nan"),
        "act_corr_median": float(valid.median()) if len(valid) else float("nan"),
        "act_corr_defined_fraction": float(len(valid) / max(1, len(corr))),
        "act_corr": [None if c != c else float(c) for c in corr.tolist()],
    }


def compare_dictionaries(
    sae_a: Any,
    sae_b: Any,
    x_a: torch.Tensor | None = None,
    x_b: torch.Tensor | None = None,
    thresholds: tuple[float, ...] = THRESHOLDS,
    encoder: bool = True,
    with_chance: bool = True,
) -> dict[str, Any]:
    """Decoder (and encoder) matching of two dictionaries, plus activation correlation given tokens.

    sae_a, sae_b: dictionaries (modules with W_dec) or bare decoder matrices [n_latents, d].
    """
    dec_a, dec_b = decoder_of(sae_a), decoder_of(sae_b)
    out: dict[str, Any] = {"decoder": compare_weights(dec_a, dec_b, thresholds)}
    if encoder and hasattr(sae_a, "W_enc") and hasattr(sae_b, "W_enc"):
        out["encoder"] = compare_weights(encoder_of(sae_a), encoder_of(sae_b), thresholds)
    if with_chance:
        out["chance"] = chance_level(dec_a.shape[0], dec_b.shape[0], dec_a.shape[1], 0, thresholds)
    if x_a is not None and isinstance(sae_a, torch.nn.Module):
        d = out["decoder"]
        out.update(
            activation_correlation(sae_a, sae_b, x_a, x_b, (np.array(d["perm_a"]), np.array(d["perm_b"])))
        )
    return out


# "Converged before compared" (issue 14, measured in benchmarks/seed_consistency.py, docs/comparing.md):
# two seeds of a converged dictionary share a clear fraction of latents one-to-one; below these
# figures every cross-variant matching number sits at the seed noise floor.
CONVERGED_MIN_SHARED = 0.2  # mean pairwise shared fraction at cos >= threshold
CONVERGED_COS_MARGIN = 0.2  # mean Hungarian cosine above chance


def is_converged(
    shared_fraction: float,
    mean_cos: float,
    chance_cos: float,
    min_shared: float = CONVERGED_MIN_SHARED,
    cos_margin: float = CONVERGED_COS_MARGIN,
) -> bool:
    """The one convergence rule (``seed_consistency`` and the pipeline's flag): seeds share ≥ ``min_shared``
    of latents and their mean Hungarian cosine is ≥ chance + ``cos_margin``. NaN figures are not converged."""
    return bool(shared_fraction >= min_shared and mean_cos >= chance_cos + cos_margin)


def seed_consistency(
    decoders: list[torch.Tensor],
    threshold: float = 0.7,
    min_shared: float = CONVERGED_MIN_SHARED,
    cos_margin: float = CONVERGED_COS_MARGIN,
) -> dict[str, Any]:
    """Do dictionary seeds of one model agree? Mean pairwise Hungarian figures against chance.

    decoders: the decoder matrices [n_latents, d] (or dictionaries) of ≥ 2 seeds of one config.
    Returns the mean over seed pairs of the shared fraction at cos ≥ ``threshold`` and of the mean
    Hungarian cosine, the same two figures for random Gaussian dictionaries of those shapes
    (``chance_level``), and ``converged``: shared fraction ≥ ``min_shared`` and mean cosine ≥
    chance + ``cos_margin``. A config that is not converged gives no verdict on matching axes.
    """
    mats = [decoder_of(d) for d in decoders]
    if len(mats) < 2:
        raise DataError(f"seed consistency needs the decoders of at least 2 seeds, got {len(mats)}.")
    pairs = [(i, j) for i in range(len(mats)) for j in range(i + 1, len(mats))]
    shared, cos, ch_shared, ch_cos = [], [], [], []
    for i, j in pairs:
        got = compare_weights(mats[i], mats[j], (threshold,))
        chance = chance_level(mats[i].shape[0], mats[j].shape[0], mats[i].shape[1], 0, (threshold,))
        shared.append(got["shared_fraction"][0])
        cos.append(got["hungarian_mean_cos"])
        ch_shared.append(chance["shared_fraction"][0])
        ch_cos.append(chance["hungarian_mean_cos"])
    out = {
        "shared_fraction": float(np.mean(shared)),
        "mean_cos": float(np.mean(cos)),
        "chance_shared": float(np.mean(ch_shared)),
        "chance_cos": float(np.mean(ch_cos)),
        "threshold": threshold,
        "n_pairs": len(pairs),
    }
    out["converged"] = is_converged(out["shared_fraction"], out["mean_cos"], out["chance_cos"], min_shared, cos_margin)
    figures = (
        f"seeds share {out['shared_fraction']:.0%} of latents at cos ≥ {threshold:g} (chance {out['chance_shared']:.0%}), "
        f"mean Hungarian cos {out['mean_cos']:.2f} (chance {out['chance_cos']:.2f})"
    )
    out["message"] = (
        f"converged: {figures}."
        if out["converged"]
        else f"not converged, dictionaries of one model disagree ({figures}; needs ≥ {min_shared:.0%} shared and "
        f"cos ≥ chance + {cos_margin:g}): train longer, narrower or with smaller batches."
    )
    return out
