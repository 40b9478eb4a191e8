"""How spread out the activations are: the participation ratio of their centred covariance.

The default learning rate of a short run (saekit.config.default_lr) is raised so that it travels
as far as a long run; that boost suits data whose variance is spread over many directions (planted
worlds: participation ratio ≈ 0.8·d) and kills most latents on a tiny LM's residual stream, whose
centred variance is 95 % in one direction (ratio 0.009·d): Adam's steps are in absolute units, so
the fine structure an SAE must resolve there is drowned by the noise of a step sized for the whole
(benchmarks/RESULTS.md, "Session 7"). ``spread_factor`` scales the boost by how spread the data is.
"""

from __future__ import annotations

import math

import torch

ISOTROPIC_FRACTION = 0.25  # a participation ratio of a quarter of d or more counts as fully spread


@torch.no_grad()
def participation_ratio(x: torch.Tensor) -> float:
    """(Σλ)² / Σλ² of the covariance of rows ``x`` [n, d] (λ its eigenvalues): 1 when one
    direction holds all the variance, d when it is spread evenly; scale-free."""
    xc = x.float() - x.float().mean(0)
    # tr(C²) = ||XcᵀXc||² = ||XcXcᵀ||²: the smaller Gram matrix is cheaper (d = 4096 and the
    # trainer's 4096 rows: 7e10 multiply-adds, about a second on a CPU, once per run)
    gram = xc.T @ xc if xc.shape[1] <= xc.shape[0] else xc @ xc.T
    total = float(torch.diagonal(gram).sum())
    if total <= 0:
        return 1.0
    return total**2 / float(gram.pow(2).sum())


def spread_factor(x: torch.Tensor) -> float:
    """min(1, √(participation ratio / (ISOTROPIC_FRACTION·d))) of rows ``x`` [n, d]: 1 for data
    spread over a quarter of its dimensions or more, smaller for data held by a few directions."""
    if x.dim() != 2 or x.shape[0] < 2:
        return 1.0
    return min(1.0, math.sqrt(participation_ratio(x) / (ISOTROPIC_FRACTION * x.shape[1])))
