"""Which sparsity prior do a dictionary's activations follow, and which penalty does it imply?

A sparsity penalty is a negative log prior on the codes: L1 ↔ Laplace (exponential on |a|),
log(1 + a²) ↔ Cauchy (half-Cauchy on |a|). ``fit_priors`` fits the magnitudes |a| of each
latent's *non-zero* activations with four families on a ≥ 0, location fixed at 0
(scipy.stats): exponential (Laplace), half-Cauchy, log-normal and gamma, picks the best by BIC
(k·ln n − 2·ln L, so the 2-parameter families must earn their extra parameter), and reports the
share of latents per family with the penalty each implies. ``plot_priors`` draws the shares and
one latent's histogram with the fitted densities.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from saekit.errors import DataError
from saekit.fileutil import atomic_write

# family -> (scipy distribution, number of free parameters with loc = 0)
FAMILIES: dict[str, tuple[Any, int]] = {
    "laplace": (stats.expon, 1),
    "cauchy": (stats.halfcauchy, 1),
    "lognormal": (stats.lognorm, 2),
    "gamma": (stats.gamma, 2),
}
# the penalty P(a) = −log p(a) (up to constants) each family implies, and saekit's nearest one
IMPLIED_PENALTY = {
    "laplace": ("|a| / b  (L1)", "l1"),
    "cauchy": ("log(1 + (a/γ)²)", "log"),
    "lognormal": ("(log a − μ)² / 2σ² + log a", None),
    "gamma": ("a/θ − (k − 1)·log a  (L1 plus a log term: sparser than L1 when k < 1)", "lp"),
}


def classify(values: np.ndarray | torch.Tensor, max_samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Best family (by BIC) for the magnitudes of non-zero ``values``, with every family's BIC."""
    a = np.abs(np.asarray(values, dtype=np.float64).ravel())
    a = a[a > 0]
    if a.size < 2:
        raise DataError(f"a prior fit needs at least 2 non-zero values, got {a.size}.")
    if a.size > max_samples:
        a = np.random.default_rng(seed).choice(a, max_samples, replace=False)
    bic = {}
    params = {}
    for name, (dist, k) in FAMILIES.items():
        p = dist.fit(a, floc=0)
        ll = float(np.sum(dist.logpdf(a, *p)))
        bic[name] = k * np.log(a.size) - 2 * ll if np.isfinite(ll) else np.inf
        params[name] = tuple(float(v) for v in p)
    best = min(bic, key=bic.get)
    return {"family": best, "bic": bic, "params": params, "n": int(a.size)}


@torch.no_grad()
def latent_activations(sae, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """Codes [N, n_latents] of ``sae`` on ``x`` (CPU, float32)."""
    return torch.cat([sae.encode(x[i : i + batch]).float().cpu() for i in range(0, x.shape[0], batch)])


def fit_priors(sae_or_codes, x: torch.Tensor | None = None, min_count: int = 50, max_samples: int = 2000) -> dict[str, Any]:
    """Fit every latent that fired ≥ ``min_count`` times; pass a dictionary and ``x``, or codes [N, n].

    Returns ``per_latent`` (latent -> family), ``share`` (family -> fraction of fitted latents),
    ``dominant`` (the most common family), ``implied_penalty`` (its −log prior and saekit's
    nearest ``penalty``) and ``skipped`` (latents with too few activations).
    """
    z = sae_or_codes if x is None else latent_activations(sae_or_codes, x)
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        raise DataError("fit_priors expects a dictionary and activations x, or codes [N, n_latents].")
    columns = ((j, z[:, j][z[:, j] != 0].numpy()) for j in range(z.shape[1]))
    return fit_prior_columns(columns, min_count=min_count, max_samples=max_samples)


def fit_prior_columns(columns: Iterable[tuple[int, np.ndarray]], min_count: int = 50, max_samples: int = 2000) -> dict[str, Any]:
    """``fit_priors`` on (latent, its non-zero values) pairs, e.g. a sample of a sparse code."""
    per_latent: dict[int, str] = {}
    skipped = 0
    for j, nz in columns:
        if nz.size < min_count:
            skipped += 1
            continue
        per_latent[int(j)] = classify(nz, max_samples=max_samples, seed=int(j))["family"]
    counts = {name: sum(1 for f in per_latent.values() if f == name) for name in FAMILIES}
    total = max(1, len(per_latent))
    share = {name: c / total for name, c in counts.items()}
    dominant = max(share, key=share.get) if per_latent else None
    text, penalty = IMPLIED_PENALTY[dominant] if dominant else (None, None)
    return {
        "per_latent": per_latent,
        "share": share,
        "dominant": dominant,
        "implied_penalty": {"formula": text, "saekit_penalty": penalty},
        "fitted": len(per_latent),
        "skipped": skipped,
    }


def plot_priors(result: dict[str, Any], path: str | Path, example: np.ndarray | None = None) -> Path:
    """Bar chart of the family shares (and, with ``example`` values, their histogram and fits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_axes = 2 if example is not None else 1
    fig, axes = plt.subplots(1, n_axes, figsize=(5 * n_axes, 3.5), squeeze=False)
    ax = axes[0, 0]
    names = list(FAMILIES)
    ax.bar(names, [result["share"][n] for n in names], color="#4C72B0")
    ax.set_ylabel("share of latents")
    ax.set_title(f"best-fitting prior ({result['fitted']} latents)")
    if example is not None:
        a = np.abs(np.asarray(example, dtype=np.float64))
        a = a[a > 0]
        ax2 = axes[0, 1]
        ax2.hist(a, bins=60, density=True, alpha=0.4, color="gray", range=(0, np.quantile(a, 0.99)))
        grid = np.linspace(1e-6, np.quantile(a, 0.99), 200)
        fit = classify(a)
        for name, (dist, _) in FAMILIES.items():
            ax2.plot(grid, dist.pdf(grid, *fit["params"][name]), label=f"{name}{' (best)' if name == fit['family'] else ''}")
        ax2.set_xlabel("|activation|")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path
