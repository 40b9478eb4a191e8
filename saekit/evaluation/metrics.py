"""Core reconstruction and sparsity metrics of a dictionary on held-out activations.

Everything is accumulated in float64 over batches, so the result does not depend on the batch
size and a dataset larger than memory streams through. Definitions (docs/metrics.md):

* ``mse``: mean over tokens and dimensions of (y - ŷ)².
* ``fvu``: Σ‖y - ŷ‖² / Σ‖y - ȳ‖² (ȳ the mean over the evaluated tokens); ``explained_variance`` = 1 - fvu.
* ``cosine``: mean over tokens of cos(y, ŷ).
* ``shrinkage``: mean over tokens of ‖ŷ‖ / ‖y‖ (SAELens' l2_ratio; < 1 means the reconstruction shrinks).
* ``relative_reconstruction_bias``: γ = E[ŷ·ŷ] / E[ŷ·y] (Gao et al. 2024; 1 = unbiased, < 1 shrinks).
* ``l0``: mean number of non-zero latents per token, with its distribution.
* ``dead_fraction``: latents that never fired; ``dense_fraction``: latents firing on > 10 % of tokens.
* ``density_log10_hist``: histogram of log10(firing frequency) over latents that fired at least once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from saekit.errors import ConfigError, DataError

DENSE_THRESHOLD = 0.1  # a latent firing on more than 10 % of tokens counts as dense
DENSITY_BINS = np.linspace(-8.0, 0.0, 41)  # log10 firing frequency, 0.2 decades per bin


def iter_source(source: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches from a Tensor, an (X, Y) pair, an activation source or an iterable.

    For an autoencoder y is x. A Tensor [N, T, d] is flattened to [N*T, d].
    """
    if isinstance(source, torch.Tensor):
        source = (source, source)
    if (
        isinstance(source, (tuple, list))
        and len(source) == 2
        and all(isinstance(s, torch.Tensor) for s in source)
    ):
        x_all, y_all = (s.reshape(-1, s.shape[-1]) for s in source)
        if x_all.shape[0] != y_all.shape[0]:
            raise DataError(
                "the input and target activations differ in length "
                f"({x_all.shape[0]} vs {y_all.shape[0]} rows)."
            )
        for start in range(0, x_all.shape[0], batch_size):
            yield x_all[start : start + batch_size], y_all[start : start + batch_size]
        return
    if hasattr(source, "batches") and hasattr(source, "d_in"):  # ActivationCache / ActivationStream
        batches = source.batches(batch_size, epochs=1)
    elif hasattr(source, "iter_batches"):
        batches = source.iter_batches(batch_size)
    elif hasattr(source, "__iter__"):
        batches = iter(source)
    else:
        raise DataError(
            f"cannot read activations from a {type(source).__name__}; "
            "expected a Tensor, (X, Y) or an activation source."
        )
    for batch in batches:
        if isinstance(batch, dict):  # a source that returns named fields
            x = batch.get("x", batch.get("acts"))
            y = batch.get("y", x)
        elif isinstance(batch, (tuple, list)):
            x, y = batch[0], batch[1]
        else:
            x = y = batch
        yield x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])


class MetricAccumulator:
    """Running sums for the core metrics; ``update`` per batch, ``result`` at the end."""

    def __init__(self, n_latents: int, dense_threshold: float = DENSE_THRESHOLD) -> None:
        self.n_latents = n_latents
        self.dense_threshold = dense_threshold
        self.n = 0
        self.d = None
        self.sum_y = None
        self.sum_y2 = 0.0
        self.sse = 0.0
        self.cos_sum = 0.0
        self.ratio_sum = 0.0
        self.yhat_yhat = 0.0
        self.yhat_y = 0.0
        self.fire_counts = torch.zeros(n_latents, dtype=torch.float64)
        self.l0_counts = torch.zeros(n_latents + 1, dtype=torch.float64)

    @torch.no_grad()
    def update(self, y: torch.Tensor, y_hat: torch.Tensor, z: torch.Tensor) -> None:
        """One batch: targets y, reconstructions ŷ [B, d] and dense codes z [B, n_latents]."""
        if z.shape[-1] != self.n_latents:
            raise DataError(f"latents have {z.shape[-1]} columns, expected n_latents = {self.n_latents}.")
        fires = (z.detach() != 0).cpu()
        self._update_recon(y, y_hat)
        self.fire_counts += fires.sum(0, dtype=torch.float64)
        self.l0_counts += torch.bincount(fires.sum(1), minlength=self.n_latents + 1).double()

    @torch.no_grad()
    def update_sparse(self, y: torch.Tensor, y_hat: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor) -> None:
        """One batch with sparse codes (values, indices) [B, k], as top-k dictionaries give them."""
        fires = (vals.detach() != 0).cpu()
        self._update_recon(y, y_hat)
        self.fire_counts += torch.bincount(idx.detach().cpu()[fires], minlength=self.n_latents).double()
        self.l0_counts += torch.bincount(fires.sum(1), minlength=self.n_latents + 1).double()

    def _update_recon(self, y: torch.Tensor, y_hat: torch.Tensor) -> None:
        y = y.detach().double().cpu()
        y_hat = y_hat.detach().double().cpu()
        if y.shape != y_hat.shape:
            raise DataError(
                f"target {tuple(y.shape)} and reconstruction {tuple(y_hat.shape)} differ in shape."
            )
        if self.sum_y is None:
            self.d = y.shape[1]
            self.sum_y = torch.zeros(self.d, dtype=torch.float64)
        self.n += y.shape[0]
        self.sum_y += y.sum(0)
        self.sum_y2 += float((y * y).sum())
        self.sse += float(((y - y_hat) ** 2).sum())
        y_norm = y.norm(dim=1)
        yhat_norm = y_hat.norm(dim=1)
        eps = 1e-12
        self.cos_sum += float(((y * y_hat).sum(1) / (y_norm * yhat_norm).clamp_min(eps)).sum())
        self.ratio_sum += float((yhat_norm / y_norm.clamp_min(eps)).sum())
        self.yhat_yhat += float((y_hat * y_hat).sum())
        self.yhat_y += float((y_hat * y).sum())

    def result(self) -> dict[str, Any]:
        if self.n == 0:
            raise DataError("no activations were evaluated (the source was empty).")
        n, d = self.n, self.d
        total_var = self.sum_y2 - float((self.sum_y**2).sum()) / n
        fvu = self.sse / total_var if total_var > 0 else float("nan")
        density = self.fire_counts / n
        l0_values = torch.arange(self.n_latents + 1, dtype=torch.float64)
        l0_mean = float((self.l0_counts * l0_values).sum() / n)
        l0_var = float((self.l0_counts * (l0_values - l0_mean) ** 2).sum() / n)
        alive = density[density > 0]
        hist, _ = (
            np.histogram(np.log10(alive.numpy()), bins=DENSITY_BINS) if len(alive) else (np.zeros(40), None)
        )
        return {
            "n_tokens": n,
            "mse": self.sse / (n * d),
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
            "cosine": self.cos_sum / n,
            "shrinkage": self.ratio_sum / n,
            "relative_reconstruction_bias": self.yhat_yhat / self.yhat_y
            if self.yhat_y != 0
            else float("nan"),
            "l0": l0_mean,
            "l0_std": math.sqrt(max(l0_var, 0.0)),
            "l0_quantiles": _count_quantiles(self.l0_counts, (0.1, 0.5, 0.9)),
            "dead_fraction": float((density == 0).double().mean()),
            "dense_fraction": float((density > self.dense_threshold).double().mean()),
            "density_log10_hist": {"edges": DENSITY_BINS.tolist(), "counts": [int(c) for c in hist]},
            "density": density.tolist(),
        }


def _count_quantiles(counts: torch.Tensor, qs: tuple[float, ...]) -> dict[str, int]:
    """Quantiles of an integer distribution given as counts per value."""
    cdf = torch.cumsum(counts, 0) / counts.sum()
    return {
        f"p{int(q * 100)}": int(torch.searchsorted(cdf, torch.tensor(q, dtype=cdf.dtype)).item()) for q in qs
    }


def reconstruction_metrics(y: torch.Tensor, y_hat: torch.Tensor, z: torch.Tensor) -> dict[str, Any]:
    """All core metrics of one in-memory batch: y, ŷ [N, d] and latents z [N, n_latents]."""
    acc = MetricAccumulator(z.shape[-1])
    acc.update(y.reshape(-1, y.shape[-1]), y_hat.reshape(-1, y_hat.shape[-1]), z.reshape(-1, z.shape[-1]))
    return acc.result()


def n_latents_of(sae: torch.nn.Module) -> int:
    cfg = getattr(sae, "cfg", None)
    if cfg is not None and getattr(cfg, "n_latents", None):
        return int(cfg.n_latents)
    return int(sae.W_dec.shape[0])


@torch.no_grad()
def dictionary_metrics(
    sae: torch.nn.Module,
    source: Any,
    batch_size: int = 4096,
    max_tokens: int | None = None,
    dense_threshold: float = DENSE_THRESHOLD,
) -> dict[str, Any]:
    """Core metrics of ``sae`` on ``source`` (a Tensor, (X, Y) pair or activation source)."""
    if max_tokens is None and hasattr(source, "batches") and not hasattr(source, "__len__"):
        raise ConfigError("a live activation stream never ends; pass max_tokens= to evaluate on it.")
    device = next(sae.parameters()).device
    dtype = next(sae.parameters()).dtype
    acc = MetricAccumulator(n_latents_of(sae), dense_threshold)
    sparse = bool(getattr(sae, "sparse_output", False)) and hasattr(sae, "decode_sparse")
    seen = 0
    for x, y in iter_source(source, batch_size):
        if max_tokens is not None:
            if seen >= max_tokens:
                break
            x, y = x[: max_tokens - seen], y[: max_tokens - seen]
        x = x.to(device=device, dtype=dtype)
        no_skip = getattr(sae, "W_skip", None) is None
        if sparse and no_skip:  # top-k: k codes per token, decoded without a dense [B, n] matrix
            vals, idx = sae.encode_sparse(x)
            acc.update_sparse(y, sae.decode_sparse(vals, idx), vals, idx)
        else:
            z = sae.encode(x)
            # one encoder pass: decode the codes unless a skip path (which needs x) is in the output
            acc.update(y, sae.decode(z) if no_skip else sae(x), z)
        seen += x.shape[0]
    return acc.result()
