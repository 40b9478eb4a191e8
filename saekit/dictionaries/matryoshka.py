"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): BatchTopK codes whose
nested prefixes of latents must each reconstruct the input on their own.

With widths w_1 < w_2 < ... < w_m = n_latents (``matryoshka_widths``), the loss is
Σ_j ||y − (z[:, :w_j] W_dec[:w_j] + b_dec)||², plus AuxK on the full reconstruction. The first
latents must then carry general features (a parent cannot hand its direction over to a child
that lives in a later prefix), which reduces feature absorption and hedging. The prefix
reconstructions are sparse decodes of the kept (row, latent, value) triples restricted to each
prefix (k·B decoder rows per level, not a dense product). Inference is BatchTopK's: ``to_inference()`` switches to the per-latent threshold
learned during training (SAELens writes it as ``jumprelu``, and so does saekit).
"""

from __future__ import annotations

import torch

from saekit.dictionaries.batchtopk import BatchTopKDictionary


class MatryoshkaDictionary(BatchTopKDictionary):
    kind = "matryoshka"

    def reconstruction_terms(self, vals, sel, base, ys) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        widths = self.cfg.matryoshka_widths
        terms: dict[str, torch.Tensor] = {}
        partial = base
        for w in widths:
            y_w = base + self.decode_batch(vals, sel, limit=w if w != widths[-1] else None)
            terms["mse" if w == widths[-1] else f"mse_{w}"] = (y_w - ys).pow(2).sum(-1).mean()
            partial = y_w
        return terms, partial
