"""Crosscoders (Lindsey et al. 2024; Minder et al. 2025): one set of latents over M models.

The same token's activations from M models arrive stacked as ``x [B, M, d]``. One encoder reads
all of them (``W_enc [M, d, n]``, summed over sources, plus ``b_enc [n]``); each latent has one
decoder vector per source (``W_dec [n, M, d]``) and each source its own ``b_dec [M, d]``. A
latent whose decoder norm is near zero in one source is a feature the other sources have alone
(saekit.evaluation.crosscoder).

Decoders are *not* held at unit norm: the norm per source is what the analysis reads. So that
the sparsity mechanism cannot cheat by shrinking codes and growing decoders, it acts on
``z_i · Σ_m ||d_i^m||`` (the decoder-norm sum):

- ``relu``: penalty λ Σ_i z_i Σ_m ||d_i^m|| (Anthropic's crosscoder L1);
- ``topk`` / ``batchtopk``: the k (per token) or k·B (per batch) largest ``z_i Σ_m ||d_i^m||``
  are kept, with the codes z themselves decoded (Minder et al.'s BatchTopK crosscoder). A
  batchtopk crosscoder infers with one threshold on that product, estimated during training.

``act_scale`` is per source ([M, 1]): each model's activations can be scaled to E||x||² = d, and
decoder norms are then compared in those units.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from saekit.dictionaries.base import SparseDictionary, TrainOutput, sparse_decode
from saekit.dictionaries.batch_select import batch_topk_select, update_threshold_ema
from saekit.dictionaries.init import init_generator
from saekit.dictionaries.relu import ReLUDictionary


class CrossCoder(SparseDictionary):
    """Shared encoder and per-source decoders; subclasses choose the sparsity mechanism."""

    kind = "crosscoder"  # not "relu": the Anthropic resampler of ReLU SAEs does not apply

    def __init__(self, cfg):
        super().__init__(cfg)
        m, d, n = cfg.n_sources, cfg.d_in, cfg.n_latents
        self.W_enc = nn.Parameter(torch.zeros(m, d, n))
        self.W_dec = nn.Parameter(torch.zeros(n, m, d))
        self.b_dec = nn.Parameter(torch.zeros(m, d))
        self.register_buffer("act_scale", torch.ones(m, 1))

    @property
    def n_sources(self) -> int:
        return self.cfg.n_sources

    @property
    def source_names(self) -> tuple[str, ...]:
        return self.cfg.source_names or tuple(f"source{i}" for i in range(self.n_sources))

    @property
    def unit_norm_decoder(self) -> bool:
        return False  # per-source decoder norms carry the sharing information

    # ------------------------------------------------------------------ encoding / decoding
    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.n_sources or x.shape[2] != self.d_in:
            raise ValueError(
                f"a crosscoder over {self.n_sources} sources of width {self.d_in} takes x [B, "
                f"{self.n_sources}, {self.d_in}], got shape {tuple(x.shape)}."
            )

    def scale_in(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x.to(self.W_enc.dtype) * self.act_scale

    def pre_acts(self, xs: torch.Tensor) -> torch.Tensor:
        x = (xs - self.b_dec).reshape(xs.shape[0], -1)
        return torch.addmm(self.b_enc, x, self.W_enc.reshape(-1, self.n_latents))

    def decoder_norms(self) -> torch.Tensor:
        """||d_i^m|| for every latent and source: [n_latents, n_sources]."""
        return self.W_dec.norm(dim=-1)

    def _flat_dec(self) -> torch.Tensor:
        return self.W_dec.reshape(self.n_latents, -1)

    def _decode_scaled(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self._flat_dec()).view(z.shape[0], self.n_sources, self.d_in) + self.b_dec

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction [B, M, d] of every source from codes ``z`` [B, n_latents]."""
        return self._decode_scaled(z) / self.act_scale

    def decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = sparse_decode(idx, vals, self._flat_dec(), self.b_dec.reshape(-1))
        return out.view(idx.shape[0], self.n_sources, self.d_in) / self.act_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ training
    def training_loss(self, x, y=None, *, dead_mask=None, step=0) -> TrainOutput:
        xs = self.scale_in(x)
        pre, z = self.train_codes(xs)
        y_hat = self._decode_scaled(z)
        # the squared error summed over sources (Anthropic), averaged over tokens
        terms = {"mse": (y_hat - xs).pow(2).sum((-2, -1)).mean()}
        terms.update(self.sparsity_loss(pre, z, step))
        terms.update(self.aux_loss(xs, xs, pre, y_hat, dead_mask))
        active = z != 0
        return TrainOutput(sum(terms.values()), y_hat, active.any(0), active.sum(-1).float().mean(), terms)

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def fold_act_scale(self) -> CrossCoder:
        """Fold the per-source scale s_m into the weights (W_enc[m]·s_m, W_dec[:, m]/s_m, b_dec[m]/s_m).

        Exact for relu. For top-k kinds the selection weights z by Σ_m ||d^m||, which this
        changes unless every s_m is equal; a ValueError says so rather than export a different
        dictionary.
        """
        s = self.act_scale.reshape(-1)
        if bool((s == 1).all()):
            return self
        if self.cfg.kind != "relu" and not bool(torch.allclose(s, s[0].expand_as(s))):
            raise ValueError(
                "this top-k crosscoder was trained with a different activation scale per source; "
                "its selection cannot be folded into raw-activation weights."
            )
        self.W_enc.mul_(s[:, None, None])
        self.W_dec.div_(s[None, :, None])
        self.b_dec.div_(s[:, None])
        if hasattr(self, "threshold"):
            self.threshold.div_(s[0])  # selection values z·Σ||d|| scale with 1/s
        self.act_scale.fill_(1.0)
        return self

    def extra_repr(self) -> str:
        s = f"kind={self.cfg.kind}, n_sources={self.n_sources}, d={self.d_in}, n_latents={self.n_latents}"
        return s + (f", k={self.cfg.k}" if self.cfg.kind != "relu" else "")


class ReLUCrossCoder(CrossCoder):
    """z = ReLU(pre); penalty λ Σ_i z_i Σ_m ||d_i^m|| (warmed up like the ReLU SAE's)."""

    sparsity_coef_at = ReLUDictionary.sparsity_coef_at

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def sparsity_loss(self, pre, z, step) -> dict[str, torch.Tensor]:
        coef = self.sparsity_coef_at(step)
        if coef == 0:
            return {}
        return {"sparsity": coef * (z * self.decoder_norms().sum(-1)).sum(-1).mean()}


class _TopKSelection(CrossCoder):
    """Selection on z·Σ_m||d^m|| and AuxK for dead latents, shared by topk and batchtopk."""

    def weighted(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ReLU'd codes, codes × decoder-norm sum) [B, n]."""
        acts = torch.relu(pre)
        return acts, acts * self.decoder_norms().sum(-1)

    def aux_loss(self, xs, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        """AuxK (Gao et al. 2024) over all sources: dead latents reconstruct the residual."""
        if dead_mask is None or self.cfg.aux_coef == 0 or pre is None:
            return {}
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return {}
        k_aux = min(self.cfg.k_aux, n_dead)
        acts, w = self.weighted(pre)
        _, idx = w.masked_fill(~dead_mask[None], -1.0).topk(k_aux, dim=-1, sorted=False)
        vals = acts.gather(-1, idx)
        e = (ys - y_hat).detach().reshape(xs.shape[0], -1)
        e_hat = sparse_decode(idx, vals, self._flat_dec(), None)
        scale = min(n_dead / self.cfg.k_aux, 1.0)
        return {"aux": self.cfg.aux_coef * scale * (e_hat - e).pow(2).sum(-1).mean()}


class TopKCrossCoder(_TopKSelection):
    """Keep the k latents per token with the largest z·Σ_m||d^m||."""

    sparse_output = True

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        acts, w = self.weighted(pre)
        idx = w.topk(self.cfg.k, dim=-1, sorted=False).indices
        return torch.zeros_like(acts).scatter_(-1, idx, acts.gather(-1, idx))


class BatchTopKCrossCoder(_TopKSelection):
    """Keep the k·B largest z·Σ_m||d^m|| of the batch; infer with a threshold on that product."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.n_latents))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))
        self.use_threshold = False

    def init_extra(self) -> None:
        self.threshold.zero_()
        self.threshold_updates.zero_()
        self.use_threshold = False

    def batch_topk(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense codes [B, n], the kept z·Σ||d|| values) of the batch-level top-k."""
        acts, w = self.weighted(pre)
        sel = batch_topk_select(w.detach(), self.cfg.k)
        return sel.dense(acts[sel.rows, sel.cols]), sel.scores

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if self.use_threshold:
            acts, w = self.weighted(pre)
            return acts * (w > self.threshold)
        return self.batch_topk(pre)[0]

    def train_codes(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_acts(xs)
        z, kept = self.batch_topk(pre)
        self.update_threshold(kept.detach())
        return pre, z

    def update_threshold(self, kept: torch.Tensor) -> None:
        update_threshold_ema(self.threshold, self.threshold_updates, kept.detach())

    def to_inference(self) -> BatchTopKCrossCoder:
        self.use_threshold = True
        return self


@torch.no_grad()
def init_crosscoder(cc: CrossCoder, seed: int = 0) -> CrossCoder:
    """Random decoder rows of unit norm per source, encoder = decoder transpose, zero biases."""
    cfg = cc.cfg
    gen = init_generator(seed)
    m, d, n = cfg.n_sources, cfg.d_in, cfg.n_latents
    w_dec = torch.randn(n, m, d, generator=gen)
    w_dec /= w_dec.norm(dim=-1, keepdim=True)
    if cfg.init_encoder_from_decoder:
        # Each latent's encoder reads the directions it writes: it fires on what it can
        # reconstruct from the first step (Gao et al.; Minder et al. for crosscoders).
        w_enc = w_dec.permute(1, 2, 0).clone()
    else:
        bound = 1.0 / math.sqrt(m * d)
        w_enc = torch.empty(m, d, n).uniform_(-bound, bound, generator=gen)
    cc.W_dec.copy_(w_dec.to(cc.W_dec.dtype))
    cc.W_enc.copy_(w_enc.to(cc.W_enc.dtype))
    cc.b_enc.zero_()
    cc.b_dec.zero_()
    cc.init_extra()
    return cc
