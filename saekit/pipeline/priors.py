"""The sparsity-prior diagnostic of one dictionary in a comparison (report section "Implied prior").

A sample of the latents that fired often enough on the held-out tokens is fitted by
``saekit.evaluation.priors`` (Laplace / half-Cauchy / log-normal / gamma by BIC); the record keeps
the share of each family and the penalty the dominant one implies. A sample, because a fit costs
~10 ms per latent and a dictionary may have tens of thousands.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from saekit.evaluation.autointerp import SparseActs
from saekit.evaluation.priors import fit_prior_columns


def dictionary_priors(
    acts: SparseActs, seed: int, max_latents: int = 64, min_count: int = 20, max_samples: int = 500
) -> dict[str, Any] | None:
    """Family shares over up to ``max_latents`` latents (seeded sample) with ≥ ``min_count`` activations."""
    if max_latents <= 0:
        return None
    eligible = np.flatnonzero(np.diff(acts.indptr) >= min_count)
    if eligible.size == 0:
        return None
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, size=min(max_latents, eligible.size), replace=False).tolist())
    fit = fit_prior_columns(((j, acts.of(j)[1]) for j in chosen), min_count=min_count, max_samples=max_samples)
    fit.pop("per_latent")
    fit["eligible"] = int(eligible.size)
    return fit
