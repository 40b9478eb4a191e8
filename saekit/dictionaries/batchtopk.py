"""BatchTopK SAE (Bussmann et al. 2024): keep the k·B largest activations of the whole batch.

Tokens that need more latents get more, tokens that need fewer get fewer, at the same average
L0 = k. At inference a per-token rule is needed, so training keeps a running estimate of the
smallest activation the batch-level top-k kept; ``to_inference()`` turns that estimate into a
JumpReLU ``threshold`` [n_latents] (z = pre · [pre > θ]) and the dictionary no longer depends on
the other tokens of its batch. ``saekit.train`` returns dictionaries already switched.
Dead latents get the AuxK term of ``topk`` (``k_aux``, ``aux_coef``).

Training is sparse as topk's is: the selection (``batch_select.batch_topk_select``, shared with
the batchtopk crosscoder) gives the k·B kept (row, latent, value) entries in row order; the
decoder is ``embedding_bag`` with one bag per row (rows hold different numbers of latents) and,
when no AuxK term needs the dense pre-activations, the encoder backward is
``saekit.kernels.pairs_encode`` (gradients from the k·B entries, no dense [B, n] gradient).
``TrainConfig.use_kernels="dense"`` trains through plain autograd instead (the reference the
tests compare against). benchmarks/bench_batchtopk.py; RESULTS.md.
"""

from __future__ import annotations

import torch

from saekit.dictionaries.base import SparseDictionary, TrainOutput
from saekit.dictionaries.batch_select import (  # noqa: F401  (THRESHOLD_EMA: public name kept)
    THRESHOLD_EMA,
    BatchSelection,
    batch_topk_select,
    update_threshold_ema,
)
from saekit.dictionaries.topk import auxk_loss
from saekit.kernels import pairs_encode, resolve_backend


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
        """Dense codes [B, n] of the batch-level top-k (ReLU'd)."""
        sel = batch_topk_select(pre.detach(), self.cfg.k)
        return sel.dense(torch.relu(pre[sel.rows, sel.cols]))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if self.use_threshold:
            return pre * (pre > self.threshold)
        return self.batch_topk(pre)

    def train_codes(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_acts(xs)
        z = self.batch_topk(pre)
        self.update_threshold(z.detach())
        return pre, z

    def update_threshold(self, kept: torch.Tensor) -> None:
        """EMA of the smallest positive kept value (``kept``: dense codes or the kept values)."""
        update_threshold_ema(self.threshold, self.threshold_updates, kept.detach())

    def select_batch(self, xs: torch.Tensor, need_pre: bool) -> tuple[torch.Tensor, BatchSelection, torch.Tensor | None]:
        """(ReLU'd kept values [P], the selection, dense pre-activations or None): sparse
        encoder backward on the torch kernel backend in fp32 unless ``need_pre`` (AuxK)."""
        sparse = (
            not need_pre
            and resolve_backend("auto", xs.device) == "torch"  # CUDA (triton): not measured yet
            and xs.dtype == self.W_enc.dtype == torch.float32
        )
        if not sparse:
            pre = self.pre_acts(xs)
            sel = batch_topk_select(pre.detach(), self.cfg.k)
            return torch.relu(pre[sel.rows, sel.cols]), sel, pre
        xin = xs - self.b_dec if self.apply_b_dec_to_input else xs
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, xin, self.W_enc)
        sel = batch_topk_select(pre, self.cfg.k)
        # sel.scores are pre[sel.rows, sel.cols] already: no second gather from the [B, n] matrix
        return torch.relu(pairs_encode(xin, self.W_enc, self.b_enc, sel.scores, sel.rows, sel.cols, sel.crow)), sel, None

    def decode_batch(self, vals: torch.Tensor, sel: BatchSelection) -> torch.Tensor:
        """Σ vals·W_dec[latent] per row (no bias) of the kept entries."""
        if resolve_backend("auto", vals.device) == "dense":  # the plain-autograd reference
            return sel.dense(vals) @ self.W_dec
        return torch.nn.functional.embedding_bag(
            sel.cols, self.W_dec, sel.offsets, per_sample_weights=vals.to(self.W_dec.dtype), mode="sum"
        )

    def reconstruction_terms(self, vals, sel, base, ys) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({name: mse}, full reconstruction); matryoshka adds one term per prefix."""
        y_hat = base + self.decode_batch(vals, sel)
        return {"mse": (y_hat - ys).pow(2).sum(-1).mean()}, y_hat

    def training_loss(self, x, y=None, *, dead_mask=None, step=0) -> TrainOutput:
        xs = self.scale_in(x)
        ys = xs if y is None else self.scale_in(y)
        need_pre = dead_mask is not None and bool(dead_mask.any()) and bool(self.cfg.aux_coef)
        vals, sel, pre = self.select_batch(xs, need_pre)
        self.update_threshold(vals)
        terms, y_hat = self.reconstruction_terms(vals, sel, self.b_dec + self.skip_path(xs), ys)
        terms.update(self.aux_loss(xs, ys, pre, y_hat, dead_mask))
        active = (vals > 0).float()
        # a latent fired if any of its kept entries is positive (a sum, not a boolean gather)
        fired = torch.zeros(self.n_latents, device=x.device).index_add_(0, sel.cols, active) > 0
        l0 = active.sum() / x.shape[0]
        return TrainOutput(sum(terms.values()), y_hat, fired, l0, terms)

    def aux_loss(self, xs, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        # Bussmann et al. train BatchTopK with the same AuxK term as TopK.
        return auxk_loss(self, ys, pre, y_hat, dead_mask)

    def to_inference(self) -> BatchTopKDictionary:
        self.use_threshold = True
        return self
