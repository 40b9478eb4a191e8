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
``target_l0`` L* (Gemma Scope 2): it pushes L0 down when above the target *and up when below*,
so the dictionary settles at the requested sparsity whatever λ is.
"""

from __future__ import annotations

import torch
from torch import nn

from saekit.dictionaries.base import SparseDictionary

STEP_BANDWIDTH = 0.001  # Gemma Scope's STE bandwidth: the step and tanh losses' default
# The quadratic loss's default (SAELens's for every loss). Its L0 must follow the target within a
# run: at 0.001 the STE window on normalised pre-activations (std ~1 at E||x||² = d_in) holds
# almost no entries, θ got nearly no gradient and L0 ended near 14 for a target of 3.
QUADRATIC_BANDWIDTH = 0.05


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth, to_input=False):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        ctx.to_input = to_input
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        ste = (threshold / eps) * _rectangle((pre - threshold) / eps) * grad
        grad_pre = grad * (pre > threshold)
        if ctx.to_input:
            grad_pre = grad_pre + ste
        return grad_pre, -ste.sum(0), None, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth, to_input=False):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        ctx.to_input = to_input
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        ste = (1.0 / eps) * _rectangle((pre - threshold) / eps) * grad
        return (ste if ctx.to_input else None), -ste.sum(0), None, None


class JumpReLUDictionary(SparseDictionary):
    kind = "jumprelu"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.threshold = nn.Parameter(torch.zeros(cfg.n_latents))

    @property
    def bandwidth(self) -> float:
        """ε of the straight-through estimators: ``jumprelu_bandwidth``, else the loss's default."""
        if self.cfg.jumprelu_bandwidth is not None:
            return float(self.cfg.jumprelu_bandwidth)
        return QUADRATIC_BANDWIDTH if self.cfg.jumprelu_sparsity_loss == "quadratic" else STEP_BANDWIDTH

    def init_extra(self) -> None:
        with torch.no_grad():
            self.threshold.fill_(self.cfg.jumprelu_init_threshold)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre * (pre > self.threshold)

    def param_groups(self) -> list[dict]:
        rest = [p for n, p in self.named_parameters() if n != "threshold"]
        return [{"params": rest}, {"params": [self.threshold], "lr_scale": float(self.cfg.jumprelu_threshold_lr_scale)}]

    def train_codes(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_acts(xs)
        return pre, _JumpReLU.apply(pre, self.threshold, self.bandwidth, self.cfg.jumprelu_ste_to_input)

    def sparsity_loss(self, pre: torch.Tensor, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        warm = self.cfg.sparsity_warmup_steps
        coef = self.cfg.sparsity_coef * (1.0 if warm <= 0 else min(1.0, step / warm))
        if coef == 0:
            return {}
        mode = self.cfg.jumprelu_sparsity_loss
        if mode == "tanh":
            per_row = torch.tanh(self.cfg.jumprelu_tanh_scale * z * self.W_dec.norm(dim=-1)).sum(-1)
            return {"sparsity": coef * per_row.mean()}
        l0 = _Step.apply(pre, self.threshold, self.bandwidth, self.cfg.jumprelu_ste_to_input).sum(-1)
        if mode == "quadratic":
            target = self.cfg.target_l0
            l0 = 2.0 / target * (l0 - target).pow(2)
        return {"sparsity": coef * l0.mean()}

    @torch.no_grad()
    def after_step(self) -> None:
        super().after_step()
        # A negative threshold would let negative pre-activations through; keep θ > 0.
        self.threshold.clamp_(min=1e-6)
