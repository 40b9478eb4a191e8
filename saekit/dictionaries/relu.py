"""ReLU SAE: z = ReLU(W_enc (x - b_dec) + b_enc), trained with a sparsity penalty.

Penalties act on u_i = z_i · ||W_dec,i|| (the latent's contribution to the output norm):
``l1`` (u), ``l1_decnorm`` (the same sum with an unconstrained decoder: Anthropic's April 2024
update, where the decoder norm is part of the penalty instead of being fixed to 1), ``tanh``
(tanh(u): saturates, so large activations are not shrunk), ``log`` (log(1 + u²): a Cauchy prior)
and ``lp`` ((u + ε)^p, p < 1). The coefficient ``sparsity_coef`` warms up linearly over
``sparsity_warmup_steps`` (no penalty at step 0), which avoids killing latents before they
have found a direction.

``lp`` can be *annealed* (Karvonen et al. 2024, p-annealing): with ``lp_anneal_steps`` > 0, p
starts at 1 (plain L1, an easy convex start) and falls in ``lp_anneal_updates`` equal stages to
``lp`` between ``lp_anneal_start`` and ``lp_anneal_start + lp_anneal_steps`` (by default from a
third of the run to its last step: ``DictionaryConfig.for_run``). At each stage λ is
rescaled by (penalty at the old p) / (penalty at the new p) on the current batch, so the loss
does not jump when p changes. The stage and the rescaling factor are buffers (``lp_stage``,
``lp_coef_scale``): they travel in checkpoints, so a resumed run anneals exactly as an
uninterrupted one.
"""

from __future__ import annotations

import math

import torch

from saekit.dictionaries.base import SparseDictionary


class ReLUDictionary(SparseDictionary):
    kind = "relu"

    def __init__(self, cfg):
        super().__init__(cfg)
        # lp_anneal_steps None (the default) is resolved by the trainer (DictionaryConfig.for_run);
        # a dictionary built outside a run keeps p fixed
        if cfg.penalty == "lp" and (cfg.lp_anneal_steps or 0) > 0:
            self.register_buffer("lp_stage", torch.zeros((), dtype=torch.long))
            self.register_buffer("lp_coef_scale", torch.ones(()))

    def init_extra(self) -> None:
        if hasattr(self, "lp_stage"):
            self.lp_stage.zero_()
            self.lp_coef_scale.fill_(1.0)

    @property
    def annealing(self) -> bool:
        return hasattr(self, "lp_stage")

    def lp_stage_at(self, step: int) -> int:
        """Annealing stage at ``step``: 0 (p = 1) .. lp_anneal_updates (p = lp)."""
        c = self.cfg
        frac = (step - (c.lp_anneal_start or 0)) / c.lp_anneal_steps
        return max(0, min(c.lp_anneal_updates, math.floor(frac * c.lp_anneal_updates)))

    def p_of_stage(self, stage: int) -> float:
        return 1.0 + (self.cfg.lp - 1.0) * stage / self.cfg.lp_anneal_updates

    @property
    def current_p(self) -> float:
        return self.p_of_stage(int(self.lp_stage)) if self.annealing else self.cfg.lp

    @property
    def unit_norm_decoder(self) -> bool:
        return self.cfg.penalty != "l1_decnorm" and not self.cfg.zero_init_decoder

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def sparsity_coef_at(self, step: int) -> float:
        warm = self.cfg.sparsity_warmup_steps
        frac = 1.0 if warm <= 0 else min(1.0, step / warm)
        return self.cfg.sparsity_coef * frac

    def penalty(self, z: torch.Tensor, exponent: float | None = None) -> torch.Tensor:
        """Per-row sparsity penalty [B] of codes ``z`` under ``cfg.penalty`` (``exponent`` overrides lp's p)."""
        u = z * self.W_dec.norm(dim=-1)
        p = self.cfg.penalty
        if p in ("l1", "l1_decnorm"):
            per = u
        elif p == "tanh":
            per = torch.tanh(u)
        elif p == "log":
            per = torch.log1p(u.pow(2))
        else:  # lp, p ≤ 1; ε keeps the gradient finite at 0
            e = self.current_p if exponent is None else exponent
            per = (u + 1e-6).pow(e) - 1e-6**e
        return per.sum(-1)

    def sparsity_loss(self, pre: torch.Tensor, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        coef = self.sparsity_coef_at(step)
        if self.annealing:
            self.advance_annealing(z.detach(), step)
            coef = coef * float(self.lp_coef_scale)
        if coef == 0:
            return {}
        return {"sparsity": coef * self.penalty(z).mean()}

    @torch.no_grad()
    def advance_annealing(self, z: torch.Tensor, step: int) -> None:
        """Move to the stage of ``step``, rescaling λ so the penalty's size is continuous."""
        new = self.lp_stage_at(step)
        old = int(self.lp_stage)
        if new == old:
            return
        before = self.penalty(z, self.p_of_stage(old)).mean()
        after = self.penalty(z, self.p_of_stage(new)).mean()
        if float(after) > 0:
            self.lp_coef_scale.mul_(before / after)
        self.lp_stage.fill_(new)
