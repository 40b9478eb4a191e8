"""Neuron alignment: how many of a dictionary's latents are one of the model's own MLP neurons.

A latent of a dictionary on an MLP output (or a transcoder's output side) whose decoder direction
points along one neuron's output direction (a row of ``W_out``, transformer-lens
``blocks.L.mlp.W_out``: [d_mlp, d_model]) is a feature the model already stores in its own basis.
The fraction of such latents is the SoLU question: did a regulariser make the neurons themselves
the features?

The cosine is signed: a latent's activation is non-negative and a neuron's mostly so, so a latent
writing along minus a neuron's direction is not that neuron. A neuron with a zero output row (a
pruned one) matches nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saekit.errors import ConfigError

_LATENT_BLOCK = 4096


def neuron_alignment(
    W_dec: torch.Tensor,
    W_out: torch.Tensor,
    threshold: float = 0.7,
    alive: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Fraction of latents whose decoder row has cosine > ``threshold`` with some row of ``W_out``.

    W_dec: [n_latents, d_model] decoder rows; W_out: [d_mlp, d_model] neuron output directions;
    alive: optional bool [n_latents], counting only those latents. Returns ``fraction``,
    ``n_aligned``, ``n_latents`` (counted), and per latent (all of them) ``best_cos`` (float64
    [n_latents]) and ``best_neuron`` (int64 [n_latents]). Computed in blocks of latents, so the
    full [n_latents, d_mlp] cosine matrix is never built.
    """
    W_dec, W_out = torch.as_tensor(W_dec), torch.as_tensor(W_out)
    if W_dec.ndim != 2 or W_out.ndim != 2:
        raise ConfigError(
            f"neuron_alignment expects W_dec [n_latents, d_model] and W_out [d_mlp, d_model], "
            f"got shapes {tuple(W_dec.shape)} and {tuple(W_out.shape)}."
        )
    if W_dec.shape[1] != W_out.shape[1]:
        raise ConfigError(
            f"W_dec rows have {W_dec.shape[1]} dimensions but W_out rows {W_out.shape[1]}: give the W_out "
            "([d_mlp, d_model]) of the MLP whose output the dictionary reads."
        )
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold}.")
    out_dirs = _unit_rows(W_out.detach().to(W_dec.device))
    best_cos = torch.empty(W_dec.shape[0], dtype=torch.float64)
    best_neuron = torch.empty(W_dec.shape[0], dtype=torch.int64)
    for r0 in range(0, W_dec.shape[0], _LATENT_BLOCK):
        cos = _unit_rows(W_dec[r0 : r0 + _LATENT_BLOCK].detach()) @ out_dirs.T
        val, idx = cos.max(dim=1)
        best_cos[r0 : r0 + cos.shape[0]] = val.double().cpu()
        best_neuron[r0 : r0 + cos.shape[0]] = idx.cpu()
    counted = torch.ones_like(best_cos, dtype=torch.bool) if alive is None else torch.as_tensor(alive, dtype=torch.bool).cpu()
    if counted.shape != best_cos.shape:
        raise ConfigError(f"alive must be a bool mask of {best_cos.numel()} latents, got shape {tuple(counted.shape)}.")
    aligned = int(((best_cos > threshold) & counted).sum())
    n = int(counted.sum())
    return {
        "fraction": aligned / n if n else float("nan"),
        "n_aligned": aligned,
        "n_latents": n,
        "best_cos": best_cos.numpy(),
        "best_neuron": best_neuron.numpy().astype(np.int64),
    }


def _unit_rows(w: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm in float32; zero rows stay zero (cosine 0 with everything)."""
    w = w.float()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
