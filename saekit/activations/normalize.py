"""Normalisation: one scalar per hookpoint so that E||x||^2 = d.

Dictionaries trained on normalised activations work with one set of hyperparameters across
models and layers. The scale is estimated once (the disk cache stores it in its manifest; a
live stream estimates it from its first rows) and a dictionary carries it as ``act_scale``
(input multiplied by it before encoding, output divided), which is folded into the weights on
export.
"""

from __future__ import annotations

import math

import torch


def norm_scale_of(x: torch.Tensor) -> float:
    """sqrt(d / mean ||x||^2) over the rows of x [N, d] (float64 accumulation)."""
    msq = float(x.double().pow(2).sum(-1).mean())
    return math.sqrt(x.shape[-1] / msq) if msq > 0 else 1.0


def estimate_norm_scale(source, n_tokens: int = 65536, batch_size: int = 4096) -> float | tuple[float, float]:
    """Estimate the scale from ``n_tokens`` rows of a source (one float, or a pair for paired sources).

    Reads a fresh copy of the position: the source's state is saved and restored, so the
    estimate does not shift the batches a training will see.
    """
    state = source.state_dict()
    xs, ys = [], []
    seen = 0
    while seen < n_tokens:
        batch = source.next_batch(min(batch_size, n_tokens - seen))
        x, y = batch if isinstance(batch, tuple) else (batch, None)
        if x.shape[0] == 0:
            break
        xs.append(x.cpu())
        if y is not None:
            ys.append(y.cpu())
        seen += x.shape[0]
    source.load_state_dict(state)
    sx = norm_scale_of(torch.cat(xs))
    return (sx, norm_scale_of(torch.cat(ys))) if ys else sx
