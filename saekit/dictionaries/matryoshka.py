"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): BatchTopK codes whose
nested prefixes of latents must each reconstruct the input on their own.

With widths w_1 < w_2 < ... < w_m = n_latents (``matryoshka_widths``), the loss is
||y − ŷ_m||² + c · Σ_{j<m} ||y − ŷ_j||², ŷ_j = z[:, :w_j] W_dec[:w_j] + b_dec, plus AuxK on the
full reconstruction. The first latents must then carry general features (a parent cannot hand
its direction over to a child that lives in a later prefix), which reduces feature absorption
and hedging.

c is ``matryoshka_inner_weight`` (default 0.15). Bussmann et al. and SAELens weigh every prefix
as the full dictionary (c = 1): on a world without hierarchy the small prefixes then pull their
latents toward mixtures of features (each must explain as much variance as it can alone), and
the flat planted world of tests/test_defaults.py reached MMCS 0.914 at 600k tokens. At c = 0.15
it reaches 0.971 (batchtopk: 0.963) and absorption on the hierarchical world stays a fifth of
batchtopk's (docs/dictionaries.md, "Matryoshka's prefix weight").

The prefix reconstructions are built incrementally: the kept (row, latent, value) entries are
grouped by the prefix group their latent falls in (latents w_{j−1} ≤ i < w_j), one
``embedding_bag`` decodes every (group, row) bag at once, and a cumulative sum over groups gives
ŷ_1 … ŷ_m: the decoder work of one BatchTopK decode, not one decode per prefix
(benchmarks/bench_matryoshka.py; RESULTS.md). Inference is BatchTopK's: ``to_inference()``
switches to the per-latent threshold learned during training (SAELens writes it as
``jumprelu``, and so does saekit).
"""

from __future__ import annotations

import torch

from saekit.dictionaries.batch_select import BatchSelection
from saekit.dictionaries.batchtopk import BatchTopKDictionary
from saekit.kernels import resolve_backend


class MatryoshkaDictionary(BatchTopKDictionary):
    kind = "matryoshka"

    @property
    def inner_weight(self) -> float:
        return self.cfg.matryoshka_inner_weight

    def group_decodes(self, vals: torch.Tensor, sel: BatchSelection) -> torch.Tensor:
        """[m, B, d_out]: row b's Σ vals·W_dec[latent] over its kept latents in group j (no bias)."""
        widths = torch.tensor(self.cfg.matryoshka_widths, device=sel.cols.device)
        m, B = widths.numel(), sel.counts.numel()
        if resolve_backend("auto", vals.device) == "dense":  # the plain-autograd reference
            z, lo, out = sel.dense(vals), 0, []
            for w in self.cfg.matryoshka_widths:
                out.append(z[:, lo:w] @ self.W_dec[lo:w])
                lo = w
            return torch.stack(out)
        group = torch.bucketize(sel.cols, widths, right=True)  # latent i in group j: w_{j-1} ≤ i < w_j
        bag = group * B + sel.rows
        # entries are row-major already: a stable sort by group keeps rows in order within a group
        order = torch.sort(group, stable=True).indices
        counts = torch.bincount(bag, minlength=m * B)
        offsets = torch.cumsum(counts, 0) - counts
        out = torch.nn.functional.embedding_bag(
            sel.cols[order], self.W_dec, offsets, per_sample_weights=vals[order].to(self.W_dec.dtype), mode="sum"
        )
        return out.view(m, B, -1)

    def reconstruction_terms(self, vals, sel, base, ys) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        widths = self.cfg.matryoshka_widths
        g = self.group_decodes(vals, sel)
        if resolve_backend("auto", vals.device) == "dense":  # plain autograd: the reference
            prefixes = base + torch.cumsum(g, 0)  # [m, B, d]: ŷ_1 … ŷ_m
            mse, y_hat = (prefixes - ys).pow(2).sum(-1).mean(-1), prefixes[-1]
        else:
            residual = ys - base
            mse = NestedMSE.apply(residual, g.to(residual.dtype))
            y_hat = (base + g.sum(0)).detach()  # read by AuxK (its residual is detached) and the metrics only
        terms = {"mse": mse[-1]}
        for j, w in enumerate(widths[:-1]):
            terms[f"mse_{w}"] = self.inner_weight * mse[j]
        return terms, y_hat


class NestedMSE(torch.autograd.Function):
    """[m] mean (over rows) squared errors ‖r − Σ_{i≤j} g_i‖² for r [B, d] and g [m, B, d].

    The same values and gradients as autograd through ``cumsum`` (the dense reference above), in
    about half the passes over [m, B, d]: the forward subtracts the groups from one residual in
    place, the backward rebuilds each prefix's residual from the last one and accumulates
    ∂/∂g_j = −2/B · Σ_{i≥j} grad_i · e_i from the last group down. This elementwise work, not the
    decode, was most of what Matryoshka cost over BatchTopK (benchmarks/bench_matryoshka.py).
    """

    @staticmethod
    def forward(ctx, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        e = r.detach().clone()
        out = torch.empty(g.shape[0], dtype=r.dtype, device=r.device)
        for j in range(g.shape[0]):
            e.sub_(g[j])
            flat = e.reshape(-1)
            out[j] = torch.dot(flat, flat)
        ctx.save_for_backward(e, g)
        return out / r.shape[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e_last, g = ctx.saved_tensors
        e, acc = e_last.clone(), torch.zeros_like(e_last)
        grad_g = torch.empty_like(g)
        scale = -2.0 / e.shape[0]
        for j in range(g.shape[0] - 1, -1, -1):
            acc.addcmul_(e, grad[j])  # Σ_{i≥j} grad_i · e_i
            torch.mul(acc, scale, out=grad_g[j])
            if j:
                e.add_(g[j])  # e_{j-1} = e_j + g_j
        return -grad_g[0], grad_g
