"""BatchTopK SAE (Bussmann et al. 2024): keep the k·B largest activations of the whole batch.

Tokens that need more latents get more, tokens that need fewer get fewer, at the same average
L0 = k. At inference a per-token rule is needed, so training keeps a running estimate of the
smallest activation the batch-level top-k kept; ``to_inference()`` turns that estimate into a
JumpReLU ``threshold`` [n_latents] (z = pre · [pre > θ]) and the dictionary no longer depends on
the other tokens of its batch. ``saekit.train`` returns dictionaries already switched.
Dead latents get the AuxK term of ``topk`` (``k_aux``, ``aux_coef``).
"""

from __future__ import annotations

import torch

from saekit.dictionaries.base import SparseDictionary
from saekit.dictionaries.topk import auxk_loss

THRESHOLD_EMA = 0.99  # decay of the running threshold estimate


class BatchTopKDictionary(SparseDictionary):
    kind = "batchtopk"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.n_latents))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))
        self.use_threshold = False

    def init_extra(self) -> None:
        self.threshold.zero_()
        self.threshold_updates.zero_()
        self.use_threshold = False

    def batch_topk(self, pre: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(pre)
        n_keep = min(self.cfg.k * acts.shape[0], acts.numel())
        flat = acts.flatten()
        vals, idx = flat.topk(n_keep, sorted=False)
        return torch.zeros_like(flat).scatter_(0, idx, vals).view_as(acts)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if self.use_threshold:
            return pre * (pre > self.threshold)
        return self.batch_topk(pre)

    def train_codes(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_acts(xs)
        z = self.batch_topk(pre)
        self.update_threshold(z.detach())
        return pre, z

    @torch.no_grad()
    def update_threshold(self, z: torch.Tensor) -> None:
        kept = z[z > 0]
        if kept.numel() == 0:
            return
        smallest = kept.min().to(self.threshold.dtype)
        if int(self.threshold_updates) == 0:
            self.threshold.fill_(smallest)
        else:
            self.threshold.mul_(THRESHOLD_EMA).add_((1 - THRESHOLD_EMA) * smallest)
        self.threshold_updates.add_(1)

    def aux_loss(self, xs, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        # Bussmann et al. train BatchTopK with the same AuxK term as TopK.
        return auxk_loss(self, ys, pre, y_hat, dead_mask)

    def to_inference(self) -> BatchTopKDictionary:
        self.use_threshold = True
        return self
