"""Reconstruction and sparsity of a crosscoder on held-out rows, per source.

``crosscoder_metrics(cc, data)`` (what ``saekit.evaluate`` returns for a crosscoder), with data a
Tensor [N, M, d] or {source name: Tensor [N, d]} of the same token rows, in raw units:

* ``fvu`` / ``mse`` / ``cosine`` per source s: Σ‖x_s − x̂_s‖² / Σ‖x_s − x̄_s‖², the mean squared
  error per dimension, the mean cos(x_s, x̂_s); ``fvu`` at the top level pools every source.
* ``l0``: mean number of active latents per token; ``dead_fraction``: latents that never fired.
* per source ``l0`` and ``dead_fraction`` over the latents that write to s: those holding at
  least 1 − ``exclusive`` (default 0.1) of their decoder norm in s, i.e. every latent except
  those exclusive to another source. A latent exclusive to B adds nothing to A's reconstruction,
  so it should not count in A's sparsity.

Sums are accumulated in float64 over batches (the result does not depend on ``batch_size``).
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.evaluation.crosscoder import DEFAULT_THRESHOLDS, _stack


@torch.no_grad()
def crosscoder_metrics(
    cc: Any, data: Any, batch_size: int = 4096, exclusive: float = DEFAULT_THRESHOLDS["exclusive"]
) -> dict[str, Any]:
    """Per-source FVU, MSE, cosine, L0 and dead fraction of ``cc`` on ``data`` (module docstring)."""
    x = _stack(cc, data)
    n, m, d = x.shape
    dev = cc.W_enc.device
    norms = cc.W_dec.detach().float().norm(dim=-1).cpu()  # [n_latents, M]
    writes = (norms / norms.sum(-1, keepdim=True).clamp_min(1e-12)) >= 1 - exclusive  # [n_latents, M]
    sq_err = torch.zeros(m, dtype=torch.float64)
    sum_x = torch.zeros(m, d, dtype=torch.float64)
    sum_xx = torch.zeros(m, dtype=torch.float64)
    cos = torch.zeros(m, dtype=torch.float64)
    fired = torch.zeros(cc.n_latents, dtype=torch.bool)
    l0 = torch.zeros((), dtype=torch.float64)
    l0_src = torch.zeros(m, dtype=torch.float64)
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size].to(dev).float()
        z = cc.encode(xb)
        x_hat = cc.decode(z).float()
        active = (z != 0).cpu()
        xb, x_hat = xb.double().cpu(), x_hat.double().cpu()
        sq_err += (xb - x_hat).pow(2).sum((0, 2))
        sum_x += xb.sum(0)
        sum_xx += xb.pow(2).sum((0, 2))
        cos += torch.nn.functional.cosine_similarity(xb, x_hat, dim=-1, eps=1e-12).sum(0)
        fired |= active.any(0)
        l0 += active.sum(-1).double().sum()
        l0_src += (active.double() @ writes.double()).sum(0)
    total_var = sum_xx - sum_x.pow(2).sum(-1) / max(n, 1)  # Σ‖x_s − x̄_s‖² per source
    per_source = {}
    for s, name in enumerate(cc.source_names):
        own = writes[:, s]
        per_source[name] = {
            "fvu": float(sq_err[s] / total_var[s].clamp_min(1e-30)),
            "mse": float(sq_err[s] / max(n * d, 1)),
            "cosine": float(cos[s] / max(n, 1)),
            "l0": float(l0_src[s] / max(n, 1)),
            "dead_fraction": float((~fired[own]).float().mean()) if bool(own.any()) else None,
            "n_latents": int(own.sum()),
        }
    return {
        "fvu": float(sq_err.sum() / total_var.sum().clamp_min(1e-30)),
        "mse": float(sq_err.sum() / max(n * m * d, 1)),
        "l0": float(l0 / max(n, 1)),
        "dead_fraction": float((~fired).float().mean()),
        "n_tokens": int(n),
        "per_source": per_source,
    }
