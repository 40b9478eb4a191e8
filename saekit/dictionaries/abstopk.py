"""AbsTopK SAE (Zhu et al. 2025, "AbsTopK: Rethinking Sparse Autoencoders for Bidirectional
Features"): keep the k pre-activations of largest *magnitude* per token, with their sign.

A plain top-k SAE has non-negative codes, so a feature that varies in both directions along one
axis (a ± pair of directions) costs it two latents with opposite decoder rows. AbsTopK codes are
signed: one latent covers both directions. Codes are exactly k per row, so decoding takes the
sparse path (k decoder rows per token). Dead latents get AuxK over the dead latents' largest
|pre-activations| (signed values), as SAELens does.
"""

from __future__ import annotations

import torch

from saekit.dictionaries.base import sparse_decode
from saekit.dictionaries.topk import TopKDictionary


class AbsTopKDictionary(TopKDictionary):
    kind = "abstopk"
    fused_encode = False  # saekit.kernels.topk_encode applies a ReLU; signed codes need the plain path

    def select(self, pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(signed values, indices) [B, k] of the k largest |pre-activations| of each row."""
        idx = pre.abs().topk(min(k, pre.shape[-1]), dim=-1, sorted=False).indices
        return pre.gather(-1, idx), idx

    def aux_loss(self, xs, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        if dead_mask is None or self.cfg.aux_coef == 0:
            return {}
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return {}
        k_aux = min(self.cfg.k_aux, n_dead)
        idx = pre.abs().masked_fill(~dead_mask[None], -1.0).topk(k_aux, dim=-1, sorted=False).indices
        e = (ys - y_hat).detach()
        e_hat = sparse_decode(idx, pre.gather(-1, idx), self.W_dec, None)
        scale = min(n_dead / self.cfg.k_aux, 1.0)
        return {"aux": self.cfg.aux_coef * scale * (e_hat - e).pow(2).sum(-1).mean()}
