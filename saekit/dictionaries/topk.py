"""TopK SAE (Gao et al. 2024): keep the k largest (ReLU'd) pre-activations per token.

Training adds AuxK: the k_aux largest pre-activations among *dead* latents reconstruct the
main model's residual error, weighted by ``aux_coef`` (α = 1/32) and by min(n_dead / k_aux, 1),
which gives dead latents a gradient and brings most of them back. ``multi_topk=True`` adds
Gao et al.'s Multi-TopK term L(4k)/8 so the dictionary also works at larger k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from saekit.dictionaries.base import SparseDictionary, TrainOutput, sparse_decode
from saekit.kernels import topk_encode


class TopKDictionary(SparseDictionary):
    kind = "topk"
    sparse_output = True
    fused_encode = True  # may train through saekit.kernels.topk_encode (ReLU'd codes)

    def select(self, pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, indices) [B, k] of the k largest ReLU'd pre-activations of each row."""
        # top-k then ReLU equals ReLU then top-k (ReLU is monotone) and touches k values, not n.
        vals, idx = pre.topk(min(k, pre.shape[-1]), dim=-1, sorted=False)
        return torch.relu(vals), idx

    def decode_rows(self, vals: torch.Tensor, idx: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Σ vals·W_dec[idx] (+ bias) in scaled space, [B, k] -> [B, d_out]. The selection and
        this sum are what a latent-sharded subclass (saekit.parallel) replaces."""
        return sparse_decode(idx, vals, self.decoder_weights(), bias)

    def fired_mask(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """[latents held here] bool: the latents active on at least one row."""
        n = self.W_dec.shape[0]
        # inactive entries point at a spare slot n: no boolean gather (a host sync on CUDA)
        fired = torch.zeros(n + 1, dtype=torch.bool, device=vals.device)
        fired.index_fill_(0, idx.masked_fill(vals == 0, n).flatten(), True)
        return fired[:n]

    def count_dead(self, dead_mask: torch.Tensor) -> int:
        return int(dead_mask.sum())

    def fused_encoder(self):
        """The sparse-backward top-k encoder of saekit.kernels (None in a subclass that selects
        its own way, e.g. the latent-sharded one)."""
        return topk_encode

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        vals, idx = self.select(pre, self.cfg.k)
        return torch.zeros_like(pre).scatter_(-1, idx, vals)

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.select(self.pre_acts(self.scale_in(x)), self.cfg.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.scale_in(x)
        vals, idx = self.select(self.pre_acts(xs), self.cfg.k)
        return (self.decode_rows(vals, idx, self.b_dec) + self.skip_path(xs)) / self.act_scale

    def training_loss(self, x, y=None, *, dead_mask=None, step=0) -> TrainOutput:
        xs = self.scale_in(x)
        ys = xs if y is None else self.scale_in(y)
        encode = self.fused_encoder()
        # (a subclass with its own aux_loss trains through the dense path, which calls it)
        own_aux = type(self).aux_loss is TopKDictionary.aux_loss
        sparse = not self.cfg.multi_topk and encode is not None and self.fused_encode and own_aux
        if sparse:
            # Sparse encoder backward (saekit.kernels): the gradient of W_enc comes from the k
            # chosen entries per row, never from a dense [B, n_latents] gradient.
            pre = None
            xin = self.centred_input(xs)
            vals, idx = encode(xin, *self.encoder_weights(), self.cfg.k)
        else:
            pre = self.pre_acts(xs)
            vals, idx = self.select(pre, self.cfg.k)
        skip = self.skip_path(xs)
        y_hat = self.decode_rows(vals, idx, self.b_dec)
        if self.W_skip is not None:  # (adding the float 0.0 of no skip path would be a [B, d] pass)
            y_hat = y_hat + skip
        terms = {"mse": squared_error(y_hat, ys)}
        if self.cfg.multi_topk:
            v4, i4 = self.select(pre, 4 * self.cfg.k)
            y4 = self.decode_rows(v4, i4, self.b_dec) + skip
            terms["multi_topk"] = squared_error(y4, ys) / 8
        if sparse:
            terms.update(sparse_auxk_loss(self, xin, ys, y_hat, dead_mask, encode))
        else:
            terms.update(self.aux_loss(xs, ys, pre, y_hat, dead_mask))
        l0 = (vals != 0).sum(-1).float().mean()  # signed kinds (abstopk) are active below zero too
        return TrainOutput(sum(terms.values()), y_hat, self.fired_mask(vals, idx), l0, terms)

    def aux_loss(self, xs, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        return auxk_loss(self, ys, pre, y_hat, dead_mask, self.select, self.decode_rows, self.count_dead)

    def centred_input(self, xs: torch.Tensor) -> torch.Tensor:
        """The sparse encoder's input: ``xs - b_dec`` for an SAE, written ``xs + (-b_dec)`` (the
        same values to the bit): autograd then sums b_dec's gradient over the rows before
        negating it instead of negating all [B, d_in] of it first (the same sum, one pass fewer)."""
        return xs + self.b_dec.neg() if self.apply_b_dec_to_input else xs


def squared_error(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ over the last dimension of (y_hat - y)², averaged over rows: one fused pass forward and
    one backward (F.mse_loss) where ``.pow(2).sum(-1).mean()`` took three each; the same
    gradient to the bit, the loss's value up to the order of its sum."""
    if y_hat.dtype != y.dtype or y_hat.shape != y.shape:
        return (y_hat - y).pow(2).sum(-1).mean()
    return F.mse_loss(y_hat, y, reduction="sum") / max(1, y.numel() // max(1, y.shape[-1]))


def auxk_loss(sae, ys, pre, y_hat, dead_mask, select=None, decode_rows=None, count_dead=None) -> dict[str, torch.Tensor]:
    """AuxK (Gao et al. 2024, appendix A.2) on the latents in ``dead_mask``: the k_aux largest
    pre-activations among dead latents reconstruct the residual error. ``select``,
    ``decode_rows`` and ``count_dead`` default to the plain top-k, decoder sum and count (a
    latent-sharded TopK passes its own; batchtopk uses the defaults)."""
    cfg = sae.cfg
    if dead_mask is None or cfg.aux_coef == 0:
        return {}
    n_dead = count_dead(dead_mask) if count_dead is not None else int(dead_mask.sum())
    if n_dead == 0:
        return {}
    k_aux = min(cfg.k_aux, n_dead)
    masked = pre.masked_fill(~dead_mask[None], float("-inf"))
    # A latent-sharded rank with fewer than k_aux dead latents offers -inf entries, which never
    # win the global top-k because k_aux <= the global dead count.
    if select is not None:
        vals, idx = select(masked, k_aux)
    else:
        vals, idx = masked.topk(k_aux, dim=-1, sorted=False)
        vals = torch.relu(vals)
    e_hat = decode_rows(vals, idx, None) if decode_rows is not None else sparse_decode(idx, vals, sae.decoder_weights(), None)
    return _aux_term(cfg, n_dead, e_hat, ys, y_hat)


def _aux_term(cfg, n_dead: int, e_hat: torch.Tensor, ys: torch.Tensor, y_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """The AuxK loss: the dead latents' reconstruction ``e_hat`` against the residual error, scaled
    down when fewer than k_aux latents are dead."""
    e = (ys - y_hat).detach()  # the residual the dead latents should explain
    scale = min(n_dead / cfg.k_aux, 1.0)
    return {"aux": cfg.aux_coef * scale * squared_error(e_hat, e)}


def sparse_auxk_loss(sae, xin, ys, y_hat, dead_mask, encode) -> dict[str, torch.Tensor]:
    """AuxK as ``auxk_loss`` computes it, through the sparse-backward top-k encoder: the
    pre-activations of the dead latents only (``xin @ W_enc[:, dead]``), their k_aux largest per
    row, decoded. Same loss and gradients as the dense path without its [B, n_latents] masked
    copy, full top-k and dense encoder backward (the cost that made a run with dead latents
    slower than sparsify's, benchmarks/RESULTS.md)."""
    cfg = sae.cfg
    if dead_mask is None or cfg.aux_coef == 0:
        return {}
    dead = dead_mask.nonzero().flatten()
    n_dead = dead.numel()
    if n_dead == 0:
        return {}
    k_aux = min(cfg.k_aux, n_dead)
    if n_dead <= DENSE_AUX_FACTOR * cfg.k_aux:
        return _aux_term(cfg, n_dead, _few_dead_decode(sae, xin, dead, k_aux), ys, y_hat)
    W_enc, b_enc = sae.encoder_weights()
    vals, j = encode(xin, W_enc[:, dead], b_enc[dead], k_aux)
    return _aux_term(cfg, n_dead, sae.decode_rows(vals, dead[j], None), ys, y_hat)


# With at most this many times k_aux dead latents, AuxK decodes them with dense [B, n_dead]
# matmuls: cheaper than the sparse decode's embedding-bag backward at that size (with AuxK on for
# most of a short run, that backward was a sixth of a step; benchmarks/RESULTS.md, session 7).
DENSE_AUX_FACTOR = 4


def _few_dead_decode(sae, xin: torch.Tensor, dead: torch.Tensor, k_aux: int) -> torch.Tensor:
    """AuxK's reconstruction from the k_aux largest ReLU'd pre-activations of the ``dead`` latents,
    through plain autograd on [B, n_dead] (the same loss and gradients as the sparse path)."""
    W_enc, b_enc = sae.encoder_weights()
    pre = torch.addmm(b_enc[dead], xin, W_enc[:, dead])
    if k_aux < dead.numel():
        top = pre.topk(k_aux, dim=-1, sorted=False)
        codes = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    else:
        codes = torch.relu(pre)
    return codes @ sae.decoder_weights()[dead]
