"""Choosing L0: score a scan of top-k dictionaries trained at several k on one stream.

"Sparse but Wrong" (Chanin et al. 2025) shows that an SAE trained below the data's true L0
mixes correlated features into its decoder rows, and one trained above it splits them, so
variants should be compared each at its right L0, not at one fixed k. saekit's proxy, per
trained k:

* ``fvu``: fraction of variance unexplained on held-out rows. It falls steeply while each added
  latent per token can take a real feature, and flattens once k reaches the true L0 (more latents
  per token then only fit noise). The chosen L0 is the *knee* of this curve (Kneedle, Satopää et
  al. 2011: on both axes scaled to [0, 1], the k whose FVU lies furthest below the chord from
  the first to the last point).
* ``decoder_overlap``: mean |cos| between the decoder rows of live latents, and
  ``off_projection``: mean |(x − b_dec)·d_i| over latents i that are *off* on a row. Both grow
  when decoder rows mix features (a mixed row catches inputs it does not code for); they are
  reported beside the knee as the decoder-side evidence, not used to choose.

The proxy is ours, checked on generated data with a known L0 (tests/test_l0_scan.py); it is not
a reimplementation of the paper's metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saekit.errors import ConfigError


@torch.no_grad()
def l0_row(sae, x: torch.Tensor) -> dict[str, float]:
    """The scan's figures for one trained dictionary on held-out rows ``x``."""
    z = sae.encode(x)
    off = z == 0
    w = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    alive = (~off).any(0)
    wa = w[alive]
    c = (wa @ wa.T).abs()
    c.fill_diagonal_(0)
    n = max(1, wa.shape[0] * (wa.shape[0] - 1))
    centred = x.to(w.dtype) * sae.act_scale - sae.b_dec if not sae.cfg.transcoder else x.to(w.dtype)
    proj = (centred @ w.T).abs()
    return {
        "fvu": float((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)),
        "l0": float((~off).sum(-1).float().mean()),
        "decoder_overlap": float(c.sum() / n),
        "off_projection": float((proj * off).sum() / off.sum().clamp_min(1)),
        "alive": int(alive.sum()),
    }


def knee(ks: list[float], values: list[float]) -> float:
    """Kneedle on a decreasing convex curve: the k furthest below the chord (axes scaled to [0, 1])."""
    if len(ks) < 3:
        raise ConfigError(f"an L0 scan needs at least 3 values of k to find a knee, got {len(ks)}.")
    k = np.asarray(ks, dtype=float)
    v = np.asarray(values, dtype=float)
    kn = (k - k.min()) / max(k.max() - k.min(), 1e-12)
    vn = (v - v.min()) / max(v.max() - v.min(), 1e-12)
    chord = vn[0] + (vn[-1] - vn[0]) * kn
    return float(k[int(np.argmax(chord - vn))])


def choose_l0(saes: dict[int, Any], x: torch.Tensor) -> dict[str, Any]:
    """Score dictionaries trained at each k (``{k: sae}``) and choose the L0 at the FVU knee."""
    rows = {k: l0_row(saes[k], x) for k in sorted(saes)}
    ks = list(rows)
    return {"chosen_l0": knee(ks, [rows[k]["fvu"] for k in ks]), "rows": rows}
