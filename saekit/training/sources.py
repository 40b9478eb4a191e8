"""Adapt every activation source to one interface: batches of (x [B, d_in], y [B, d_out] | None).

Sources: a Tensor [N, d_in] (an SAE), a pair (X, Y) of Tensors (a transcoder), or an object
from ``saekit.activations`` (ActivationCache, ActivationStream) with ``next_batch(batch_size)``,
``d_in``/``d_out`` and ``state_dict()/load_state_dict()``. Every adapter has a ``state_dict()``
from which the next batch it yields is exactly reproducible, which is what exact resume needs.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from saekit.errors import DataError


class BatchSource(abc.ABC):
    """The trainer's view of activations: ``next_batch()``, a reproducible state, and sizes."""

    d_in: int
    d_out: int
    paired: bool  # True when batches carry a separate target y (transcoders)
    norm_scale: float | None = None  # the source's own E||x||² = d factor, when it knows one
    pre_scaled: float | None = None  # set when batches arrive already multiplied by norm_scale
    pre_scaled_out: float | None = None  # the targets' factor in that case (transcoders)

    @abc.abstractmethod
    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next ``batch_size`` rows: (x [B, d_in], y [B, d_out] or None for an SAE)."""

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Up to ``n`` rows for initialisation without moving the reader; None if not possible."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class TensorSource(BatchSource):
    """Rows of in-memory tensors in a seeded random order, epoch after epoch.

    The order of epoch e is ``randperm(N)`` from a generator seeded with ``seed + e``, so the
    state (epoch, position) reproduces the stream exactly.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None, seed: int = 0, shuffle: bool = True):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise DataError(f"activations must be a 2-D tensor [N, d_in], got {_describe(x)}.")
        if x.shape[0] == 0:
            raise DataError("activations tensor is empty (0 rows).")
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.dim() != 2:
                raise DataError(f"transcoder targets must be a 2-D tensor [N, d_out], got {_describe(y)}.")
            if y.shape[0] != x.shape[0]:
                raise DataError(f"transcoder inputs have {x.shape[0]} rows but targets have {y.shape[0]}.")
        self.x, self.y = x, y
        self.d_in = x.shape[1]
        self.d_out = y.shape[1] if y is not None else x.shape[1]
        self.paired = y is not None
        self.seed, self.shuffle = int(seed), shuffle
        self.epoch, self.pos = 0, 0
        self._perm: torch.Tensor | None = None

    def _order(self) -> torch.Tensor:
        if self._perm is None:
            n = self.x.shape[0]
            if self.shuffle:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
                self._perm = torch.randperm(n, generator=gen)
            else:
                self._perm = torch.arange(n)
        return self._perm

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts: list[torch.Tensor] = []
        need = batch_size
        while need > 0:
            order = self._order()
            take = order[self.pos : self.pos + need]
            parts.append(take)
            need -= take.numel()
            self.pos += take.numel()
            if self.pos >= order.numel():
                self.epoch, self.pos, self._perm = self.epoch + 1, 0, None
        idx = torch.cat(parts)
        return self.x[idx], (self.y[idx] if self.y is not None else None)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        gen = torch.Generator().manual_seed(self.seed + 7919)
        idx = torch.randperm(self.x.shape[0], generator=gen)[:n]
        return self.x[idx], (self.y[idx] if self.y is not None else None)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "n": self.x.shape[0]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("n") != self.x.shape[0]:
            raise DataError(
                f"the checkpoint was taken on a source of {state.get('n')} rows but this one has {self.x.shape[0]}."
            )
        self.epoch, self.pos, self.seed, self._perm = state["epoch"], state["pos"], state["seed"], None


class ActivationSourceAdapter(BatchSource):
    """Wraps an ``saekit.activations`` source (ActivationCache / ActivationStream).

    The wrapped object yields a Tensor [B, d] or a pair (x, y) per ``next_batch(batch_size)``,
    exposes ``d_in``/``d_out``/``paired`` and saves/restores its read position with
    ``state_dict()/load_state_dict()``. ``norm_scale`` (input side) is the factor that makes
    E||x||² = d; when the source already applies it (``normalize=True``) ``pre_scaled`` is that
    factor, and the trainer stores it in the dictionary's ``act_scale`` at the end.
    """

    def __init__(self, source: Any):
        self.source = source
        self.d_in = int(source.d_in)
        d_out = getattr(source, "d_out", None)
        self.d_out = int(d_out) if d_out is not None else self.d_in
        self.paired = bool(getattr(source, "paired", False))
        scale = getattr(source, "norm_scale", None)
        scale_out = scale
        if isinstance(scale, (tuple, list)):
            scale, scale_out = scale[0], scale[-1]
        self.norm_scale = float(scale) if scale is not None else None
        self.pre_scaled = self.norm_scale if getattr(source, "normalize", False) else None
        # a paired source may scale its targets by a different factor than its inputs
        self.pre_scaled_out = float(scale_out) if self.pre_scaled is not None else None

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = self.source.next_batch(batch_size)
        if isinstance(batch, (tuple, list)):
            x, y = batch[0], batch[1]
        else:
            x, y = batch, None
        if x.shape[0] == 0:
            raise DataError(f"activation source {type(self.source).__name__} returned an empty batch.")
        return x, y

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)


def as_source(source: Any, seed: int = 0) -> BatchSource:
    """Turn a Tensor, an (X, Y) pair, or an activations object into a BatchSource."""
    if isinstance(source, BatchSource):
        return source
    if isinstance(source, torch.Tensor):
        return TensorSource(source, None, seed=seed)
    if isinstance(source, (tuple, list)) and len(source) == 2 and all(isinstance(t, torch.Tensor) for t in source):
        return TensorSource(source[0], source[1], seed=seed)
    if hasattr(source, "next_batch") and hasattr(source, "d_in"):
        return ActivationSourceAdapter(source)
    raise DataError(
        f"cannot train from a {type(source).__name__}; expected a Tensor [N, d_in], a pair (X, Y), "
        "an ActivationCache or an ActivationStream."
    )


def _describe(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return f"a tensor of shape {tuple(t.shape)}"
    return f"a {type(t).__name__}"
