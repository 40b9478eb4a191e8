"""JumpReLU SAE (Rajamanoharan et al. 2024): z = pre · H(pre − θ), θ a learned per-latent threshold.

The loss is reconstruction + λ · L0, where L0 = Σ H(pre − θ) counts active latents directly
(no shrinkage of the active values, unlike L1). H has zero gradient almost everywhere, so θ
learns through straight-through estimators: the pseudo-derivative of H(u − θ) in θ is
−K((u − θ)/ε)/ε with the rectangle kernel K and bandwidth ε (``jumprelu_bandwidth``).
λ is ``sparsity_coef`` (warmed up over ``sparsity_warmup_steps``).

``jumprelu_sparsity_loss`` picks the sparsity term (SAELens 6's names and formulas):
``step`` λ·Σ_i H(pre_i − θ_i) (the paper's L0); ``tanh`` λ·Σ_i tanh(c·z_i·||W_dec,i||) with
c = ``jumprelu_tanh_scale`` (Anthropic's January 2025 update: a smooth L0 that reaches the
values, not only the thresholds); ``quadratic`` λ·(2/L*)·(L0 − L*)² per token around
``target_l0`` L* (Gemma Scope 2): it pushes L0 down when above the target *and up when below*.
The target is traded against reconstruction (one more active latent costs about θ² of error and
gains λ·4(L* − L0)/L*): at λ 5 L0 settles near the data's own; a larger λ holds the target.

Defaults (measured, docs/dictionaries.md): the kind trains on inputs normalised to E||x||² = d_in,
where a latent's pre-activation on tokens without its feature has std ≈ 1 whatever d_in, and a
latent should fire when its value v pays for its L0 price: v² > λ, so the thresholds must climb
to about √λ ≈ 2.2 at λ = 5. Adam moves a parameter by about lr per step, so at Gemma Scope's
θ₀ = ε = 0.001 and saekit's short-run learning rates θ could not travel that far (L0 ≈ 45 for a
true 3 after 300 steps); and an ε of 0.001 against pre-activations of scale 1 leaves the STE
window almost empty. Hence θ₀ = 0.25 (dense enough for every latent to learn first), ε = 0.2,
θ at the run's learning rate or faster (``jumprelu_threshold_lr_scale`` = 1, with a floor of √λ/steps so that θ
can climb √λ in any run whatever the width: session 7; session 6's default lr rule keeps
lr·steps ≈ 2.3 for 512 latents in any short run, far enough; 3 overshot to L0 2.2 there), and the
encoder starting at ``jumprelu_init_encoder_scale`` = 0.3 times its tied initialisation (at 1×
about a third of the latents fire at the first step and the dense reconstruction overshoots).
"""

from __future__ import annotations

import torch
from torch import nn

from saekit.dictionaries.base import SparseDictionary


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        grad_thr = -(threshold / eps) * _rectangle((pre - threshold) / eps) * grad
        return grad_pre, grad_thr.sum(0), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_thr = -(1.0 / eps) * _rectangle((pre - threshold) / eps) * grad
        return None, grad_thr.sum(0), None


class JumpReLUDictionary(SparseDictionary):
    kind = "jumprelu"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.threshold = nn.Parameter(torch.zeros(cfg.n_latents))

    @property
    def bandwidth(self) -> float:
        """ε of the straight-through estimators (``jumprelu_bandwidth``)."""
        return float(self.cfg.jumprelu_bandwidth)

    def init_extra(self) -> None:
        with torch.no_grad():
            self.threshold.fill_(self.cfg.jumprelu_init_threshold)
            # Small first pre-activations: at the full tied scale ~36 % of the latents fire at the
            # first step and the dense reconstruction overshoots (FVU 13); measured in the docs.
            self.W_enc.mul_(self.cfg.jumprelu_init_encoder_scale)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre * (pre > self.threshold)

    def own_param_groups(self) -> dict[str, dict]:
        """The thresholds step ``jumprelu_threshold_lr_scale`` times faster than the other weights,
        and fast enough to travel √λ over the run (``min_travel``): Adam moves a parameter by about
        lr per step and θ must climb to about √λ on normalised inputs (module docstring), which a
        wide dictionary's smaller width-scaled rate would not reach in a short run."""
        theta = {
            "lr_scale": float(self.cfg.jumprelu_threshold_lr_scale),
            "min_travel": float(self.cfg.sparsity_coef) ** 0.5,
        }
        return {"threshold": theta}

    def train_codes(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_acts(xs)
        return pre, _JumpReLU.apply(pre, self.threshold, self.bandwidth)

    def sparsity_loss(self, pre: torch.Tensor, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        warm = self.cfg.sparsity_warmup_steps
        coef = self.cfg.sparsity_coef * (1.0 if warm <= 0 else min(1.0, step / warm))
        if coef == 0:
            return {}
        mode = self.cfg.jumprelu_sparsity_loss
        if mode == "tanh":
            per_row = torch.tanh(self.cfg.jumprelu_tanh_scale * z * self.W_dec.norm(dim=-1)).sum(-1)
            return {"sparsity": coef * per_row.mean()}
        l0 = _Step.apply(pre, self.threshold, self.bandwidth).sum(-1)
        if mode == "quadratic":
            target = self.cfg.target_l0
            l0 = 2.0 / target * (l0 - target).pow(2)
        return {"sparsity": coef * l0.mean()}

    @torch.no_grad()
    def after_step(self) -> None:
        super().after_step()
        # A negative threshold would let negative pre-activations through; keep θ > 0.
        self.threshold.clamp_(min=1e-6)
