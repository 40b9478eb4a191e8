"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): BatchTopK codes whose
nested prefixes of latents must each reconstruct the input on their own.

With widths w_1 < w_2 < ... < w_m = n_latents (``matryoshka_widths``), the loss is
Σ_j ||y − (z[:, :w_j] W_dec[:w_j] + b_dec)||², plus AuxK on the full reconstruction. The first
latents must then carry general features (a parent cannot hand its direction over to a child
that lives in a later prefix), which reduces feature absorption and hedging. The prefix
reconstructions are built as running sums, one block of latents at a time, so the cost is one
decode. Inference is BatchTopK's: ``to_inference()`` switches to the per-latent threshold
learned during training (SAELens writes it as ``jumprelu``, and so does saekit).
"""

from __future__ import annotations

import torch

from saekit.dictionaries.base import TrainOutput
from saekit.dictionaries.batchtopk import BatchTopKDictionary


class MatryoshkaDictionary(BatchTopKDictionary):
    kind = "matryoshka"

    def training_loss(self, x, y=None, *, dead_mask=None, step=0) -> TrainOutput:
        xs = self.scale_in(x)
        ys = xs if y is None else self.scale_in(y)
        pre, z = self.train_codes(xs)
        partial = self.b_dec + self.skip_path(xs)
        widths = self.cfg.matryoshka_widths
        terms: dict[str, torch.Tensor] = {}
        start = 0
        for w in widths:
            partial = partial + z[:, start:w] @ self.W_dec[start:w]
            start = w
            name = "mse" if w == widths[-1] else f"mse_{w}"
            terms[name] = (partial - ys).pow(2).sum(-1).mean()
        terms.update(self.aux_loss(xs, ys, pre, partial, dead_mask))
        active = z != 0
        return TrainOutput(sum(terms.values()), partial, active.any(0), active.sum(-1).float().mean(), terms)
