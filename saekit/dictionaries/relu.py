"""ReLU SAE: z = ReLU(W_enc (x - b_dec) + b_enc), trained with a sparsity penalty.

Penalties act on u_i = z_i · ||W_dec,i|| (the latent's contribution to the output norm):
``l1`` (u), ``l1_decnorm`` (the same sum with an unconstrained decoder: Anthropic's April 2024
update, where the decoder norm is part of the penalty instead of being fixed to 1), ``tanh``
(tanh(u): saturates, so large activations are not shrunk), ``log`` (log(1 + u²): a Cauchy prior)
and ``lp`` ((u + ε)^p, p < 1). The coefficient ``sparsity_coef`` warms up linearly over
``sparsity_warmup_steps`` (no penalty at step 0), which avoids killing latents before they
have found a direction.
"""

from __future__ import annotations

import torch

from saekit.dictionaries.base import SparseDictionary


class ReLUDictionary(SparseDictionary):
    kind = "relu"

    @property
    def unit_norm_decoder(self) -> bool:
        return self.cfg.penalty != "l1_decnorm" and not self.cfg.zero_init_decoder

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def sparsity_coef_at(self, step: int) -> float:
        warm = self.cfg.sparsity_warmup_steps
        frac = 1.0 if warm <= 0 else min(1.0, step / warm)
        return self.cfg.sparsity_coef * frac

    def penalty(self, z: torch.Tensor) -> torch.Tensor:
        """Per-row sparsity penalty [B] of codes ``z`` under ``cfg.penalty``."""
        u = z * self.W_dec.norm(dim=-1)
        p = self.cfg.penalty
        if p in ("l1", "l1_decnorm"):
            per = u
        elif p == "tanh":
            per = torch.tanh(u)
        elif p == "log":
            per = torch.log1p(u.pow(2))
        else:  # lp, p < 1; ε keeps the gradient finite at 0
            per = (u + 1e-6).pow(self.cfg.lp) - 1e-6**self.cfg.lp
        return per.sum(-1)

    def sparsity_loss(self, pre: torch.Tensor, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        coef = self.sparsity_coef_at(step)
        if coef == 0:
            return {}
        return {"sparsity": coef * self.penalty(z).mean()}
