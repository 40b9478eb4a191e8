"""Anthropic-style resampling of dead latents (Towards Monosemanticity, 2023), for ReLU SAEs.

Each dead latent gets a new decoder direction pointing at the residual of an input the
dictionary reconstructs badly (drawn with probability ∝ loss²), an encoder column along the
same input direction scaled to 0.2 × the mean alive encoder norm, b_enc = 0, and fresh Adam
moments, so it starts life explaining something the others miss.
"""

from __future__ import annotations

import torch

from saekit.dictionaries.base import SparseDictionary


@torch.no_grad()
def resample_dead(
    sae: SparseDictionary,
    optimizer: torch.optim.Optimizer,
    dead: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor | None,
    generator: torch.Generator,
) -> int:
    """Resample the latents in bool mask ``dead`` using batch (x, y); return how many."""
    idx = dead.nonzero().flatten()
    if idx.numel() == 0:
        return 0
    xs = sae.scale_in(x)
    ys = xs if y is None else sae.scale_in(y)
    y_hat = sae.forward(x) * sae.act_scale
    residual = ys - y_hat
    loss = residual.pow(2).sum(-1)
    probs = loss.pow(2).double().cpu()
    if float(probs.sum()) <= 0:
        return 0
    rows = torch.multinomial(probs, idx.numel(), replacement=True, generator=generator).to(x.device)
    dec_dir = residual[rows]
    dec_dir = dec_dir / dec_dir.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    # The encoder reads the input space; for an SAE it is the same direction as the decoder's.
    enc_dir = dec_dir if not sae.cfg.transcoder else xs[rows] / xs[rows].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    alive = ~dead
    alive_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
    sae.W_dec[idx] = dec_dir.to(sae.W_dec.dtype)
    sae.W_enc[:, idx] = (enc_dir * 0.2 * alive_norm).T.to(sae.W_enc.dtype)
    sae.b_enc[idx] = 0.0
    for p, sl in ((sae.W_dec, (idx,)), (sae.W_enc, (slice(None), idx)), (sae.b_enc, (idx,))):
        state = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][sl] = 0.0
    return int(idx.numel())
