"""The interpretability regularisers that define the model variants.

Each returns a scalar added to the LM loss (or, for pruning, acts on the weights). Formulas
and references are in docs/model_variants.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

ATTN_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O")
MLP_WEIGHTS = ("W_in", "W_out")


def weight_l1(model: HookedTransformer) -> torch.Tensor:
    """Σ|W| over every attention (W_Q, W_K, W_V, W_O) and MLP (W_in, W_out) weight (attention-only
    models have no MLP weights)."""
    total = torch.zeros((), device=model.cfg.device)
    for block in model.blocks:
        for name in ATTN_WEIGHTS:
            total = total + getattr(block.attn, name).abs().sum()
        for name in MLP_WEIGHTS if hasattr(block, "mlp") else ():
            total = total + getattr(block.mlp, name).abs().sum()
    return total


def sheet_shape(d_mlp: int) -> tuple[int, int]:
    """The most nearly square (rows, cols) grid with rows * cols = d_mlp."""
    rows = int(math.isqrt(d_mlp))
    while d_mlp % rows:
        rows -= 1
    return rows, d_mlp // rows


def _as_sheet(neuron_vectors: torch.Tensor, sheet: tuple[int, int]) -> torch.Tensor:
    """[d_mlp, c] neuron vectors → image [1, c, rows, cols] with neuron i at (i // cols, i % cols)."""
    rows, cols = sheet
    return neuron_vectors.T.reshape(1, -1, rows, cols)


def topo_loss(model: HookedTransformer, sheet: tuple[int, int], downsample: float = 0.5) -> torch.Tensor:
    """TopoLoss (Deb et al. 2025): 1 − cos(sheet, upsample(downsample(sheet))), averaged.

    Every MLP neuron sits on a 2-D sheet; its incoming (W_in column) and outgoing (W_out row)
    weight vectors are the channels of an image. Blurring by bilinear down- and up-sampling
    and rewarding similarity to the blurred copy makes weights smooth across the sheet.
    """
    losses = []
    for block in model.blocks:
        for vectors in (block.mlp.W_in.T, block.mlp.W_out):  # both [d_mlp, d_model]
            img = _as_sheet(vectors, sheet)
            small = F.interpolate(img, scale_factor=downsample, mode="bilinear", align_corners=False)
            blurred = F.interpolate(small, size=sheet, mode="bilinear", align_corners=False)
            cos = F.cosine_similarity(img.flatten(2), blurred.flatten(2), dim=2)  # per channel
            losses.append(1 - cos.mean())
    return torch.stack(losses).mean()


@torch.no_grad()
def neighbour_similarity(model: HookedTransformer, sheet: tuple[int, int]) -> float:
    """Mean cosine similarity of W_in columns of neurons adjacent on the sheet (right and down)."""
    sims = []
    for block in model.blocks:
        img = _as_sheet(block.mlp.W_in.T.float(), sheet)[0]  # [c, rows, cols]
        right = F.cosine_similarity(img[:, :, :-1], img[:, :, 1:], dim=0)
        down = F.cosine_similarity(img[:, :-1, :], img[:, 1:, :], dim=0)
        sims.append(torch.cat([right.flatten(), down.flatten()]).mean())
    return float(torch.stack(sims).mean())


class MagnitudePruner:
    """Iterative magnitude pruning of MLP weights (Zhu & Gupta 2017 cubic schedule).

    Between start and end step the target sparsity ramps as s_t = s·(1 − (1 − p)^3); every
    `every` steps each MLP matrix keeps only its largest-magnitude entries. The masks stay on
    for the rest of training (applied after every optimiser step) and are saved.
    """

    def __init__(self, model: HookedTransformer, target: float, start: int, end: int, every: int) -> None:
        self.model, self.target, self.start, self.end, self.every = model, target, start, max(end, start + 1), every
        self.masks: dict[str, torch.Tensor] = {}

    def _params(self) -> dict[str, torch.nn.Parameter]:
        return {f"blocks.{i}.mlp.{n}": getattr(b.mlp, n) for i, b in enumerate(self.model.blocks) for n in MLP_WEIGHTS}

    def sparsity_at(self, step: int) -> float:
        if step < self.start:
            return 0.0
        progress = min(1.0, (step - self.start) / (self.end - self.start))
        return self.target * (1 - (1 - progress) ** 3)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Recompute masks on schedule steps; always re-apply the current masks."""
        on_schedule = step >= self.start and (step - self.start) % self.every == 0 or step == self.end
        if on_schedule and step <= self.end:
            sparsity = self.sparsity_at(step)
            for name, w in self._params().items():
                keep = w.numel() - int(round(sparsity * w.numel()))
                mask = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
                mask[w.abs().flatten().topk(keep).indices] = True
                self.masks[name] = mask.view_as(w)
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, w in self._params().items():
            if name in self.masks:
                w.mul_(self.masks[name])

    def zero_fraction(self) -> float:
        params = self._params().values()
        return sum(int((p == 0).sum()) for p in params) / sum(p.numel() for p in params)
