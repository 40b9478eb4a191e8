"""BatchTopK SAE (Bussmann et al. 2024): keep the k·B largest activations of the whole batch.

Tokens that need more latents get more, tokens that need fewer get fewer, at the same average
L0 = k. At inference a per-token rule is needed, so training keeps a running estimate of the
smallest activation the batch-level top-k kept; ``to_inference()`` turns that estimate into a
JumpReLU ``threshold`` [n_latents] (z = pre · [pre > θ]) and the dictionary no longer depends on
the other tokens of its batch. ``saekit.train`` returns dictionaries already switched.
Dead latents get the AuxK term of ``topk`` (``k_aux``, ``aux_coef``).

Training decodes sparsely: the k·B kept (row, latent, value) triples go to ``embedding_bag``
with one bag per row (rows hold different numbers of latents), so the decoder costs k·B rows of
W_dec instead of a dense [B, n_latents] @ [n_latents, d] product and its backward
(benchmarks/bench_batchtopk.py; RESULTS.md).
"""

from __future__ import annotations

import torch

from saekit.dictionaries.base import SparseDictionary, TrainOutput
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
        """EMA of the smallest positive kept value (``z``: dense codes or the kept values)."""
        kept = z[z > 0]
        if kept.numel() == 0:
            return
        smallest = kept.min().to(self.threshold.dtype)
        if int(self.threshold_updates) == 0:
            self.threshold.fill_(smallest)
        else:
            self.threshold.mul_(THRESHOLD_EMA).add_((1 - THRESHOLD_EMA) * smallest)
        self.threshold_updates.add_(1)

    def select_batch(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, flat indices into [B·n]) of the k·B largest ReLU'd pre-activations of the batch."""
        n_keep = min(self.cfg.k * pre.shape[0], pre.numel())
        vals, flat = pre.flatten().topk(n_keep, sorted=False)
        return torch.relu(vals), flat

    def decode_batch(self, vals: torch.Tensor, flat: torch.Tensor, n_rows: int, limit: int | None = None) -> torch.Tensor:
        """Σ vals·W_dec[latent] per row (no bias) from the kept triples; ``limit`` keeps latents < limit."""
        rows, cols = flat // self.n_latents, flat % self.n_latents
        if limit is not None:
            vals = vals * (cols < limit)
        order = torch.argsort(rows, stable=True)  # embedding_bag wants each row's entries together
        counts = torch.bincount(rows, minlength=n_rows)
        offsets = torch.cumsum(counts, 0) - counts
        return torch.nn.functional.embedding_bag(
            cols[order], self.W_dec, offsets, per_sample_weights=vals[order].to(self.W_dec.dtype), mode="sum"
        )

    def reconstruction_terms(self, vals, flat, base, ys) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({name: mse}, full reconstruction); matryoshka adds one term per prefix."""
        y_hat = base + self.decode_batch(vals, flat, ys.shape[0])
        return {"mse": (y_hat - ys).pow(2).sum(-1).mean()}, y_hat

    def training_loss(self, x, y=None, *, dead_mask=None, step=0) -> TrainOutput:
        xs = self.scale_in(x)
        ys = xs if y is None else self.scale_in(y)
        pre = self.pre_acts(xs)
        vals, flat = self.select_batch(pre)
        self.update_threshold(vals.detach())
        terms, y_hat = self.reconstruction_terms(vals, flat, self.b_dec + self.skip_path(xs), ys)
        terms.update(self.aux_loss(xs, ys, pre, y_hat, dead_mask))
        active = vals > 0
        fired = torch.zeros(self.n_latents, dtype=torch.bool, device=x.device)
        fired[flat[active] % self.n_latents] = True
        l0 = active.sum().float() / x.shape[0]
        return TrainOutput(sum(terms.values()), y_hat, fired, l0, terms)

    def aux_loss(self, xs, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        # Bussmann et al. train BatchTopK with the same AuxK term as TopK.
        return auxk_loss(self, ys, pre, y_hat, dead_mask)

    def to_inference(self) -> BatchTopKDictionary:
        self.use_threshold = True
        return self
