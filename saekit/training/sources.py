"""Adapt every activation source to one interface: batches of (x [B, d_in], y [B, d_out] | None).

Sources: a Tensor [N, d_in] (an SAE), a pair (X, Y) of Tensors (a transcoder), a dict of
source name -> activations of the same tokens (a crosscoder: batches [B, M, d]), or an object
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
                gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)  # seeds may be 63-bit hashes
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


class MultiSource(BatchSource):
    """The same token rows from several models, stacked: batches ``x [B, M, d]`` (crosscoders).

    ``sources`` maps a source name to a Tensor [N, d] (all with the same rows: one shared
    permutation keeps them aligned) or to an ActivationCache / ActivationStream (each reader
    shuffles with the same seed and layout, so its rows come in the same order; aligned caches
    are checked token by token when opened, and every batch whose readers report token ids is
    checked again). Every source must have the same width d.
    """

    paired = False

    def __init__(self, sources: dict[str, Any], seed: int = 0):
        if not isinstance(sources, dict) or len(sources) < 2:
            n = len(sources) if isinstance(sources, dict) else 0
            raise DataError(
                f"a crosscoder needs at least two sources (a dict of source name -> activations), got {n}."
            )
        self.names = tuple(str(k) for k in sources)
        self.n_sources = len(self.names)
        values = list(sources.values())
        if all(isinstance(v, torch.Tensor) for v in values):
            self._init_tensors(values, seed)
        elif any(isinstance(v, torch.Tensor) for v in values):
            raise DataError("crosscoder sources must be all tensors or all activation caches/streams, not a mix.")
        else:
            self._init_readers(values)
        self.d_out = self.d_in

    def _init_tensors(self, xs: list[torch.Tensor], seed: int) -> None:
        for name, x in zip(self.names, xs):
            if x.dim() != 2:
                raise DataError(f"crosscoder source {name!r} must be a 2-D tensor [N, d], got {_describe(x)}.")
        self._check_same("rows", [x.shape[0] for x in xs])
        self._check_same("width d", [x.shape[1] for x in xs])
        self.tensors, self.readers = xs, None
        self.d_in = xs[0].shape[1]
        # one index stream: the rows of every source are taken in the same shuffled order
        self._order = TensorSource(torch.arange(xs[0].shape[0]).unsqueeze(1), seed=seed)
        sample = self._gather(self._order.sample(4096)[0])
        self.norm_scale = _norm_scales(sample)

    def _init_readers(self, objs: list[Any]) -> None:
        self.readers = [ActivationSourceAdapter(o) for o in objs]
        self.tensors = None
        for name, r in zip(self.names, self.readers):
            if r.paired:
                raise DataError(f"crosscoder source {name!r} yields (input, output) pairs; give one hookpoint per model.")
            if r.pre_scaled is not None:
                raise DataError(
                    f"crosscoder source {name!r} was opened with normalize=True; open it without and set "
                    "TrainConfig.normalize=True (one scale per source)."
                )
        self._check_same("width d", [r.d_in for r in self.readers])
        self.d_in = self.readers[0].d_in
        from saekit.activations.aligned import check_aligned

        check_aligned(dict(zip(self.names, objs)))
        scales = [r.norm_scale for r in self.readers]
        self.norm_scale = torch.tensor(scales).reshape(-1, 1) if None not in scales else None

    def _check_same(self, what: str, values: list[int]) -> None:
        for name, v in zip(self.names[1:], values[1:]):
            if v != values[0]:
                raise DataError(
                    f"crosscoder source {name!r} has {v} {what} but {self.names[0]!r} has {values[0]}; "
                    f"every source must have the same {what}."
                )

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.reshape(-1)
        return torch.stack([x[idx] for x in self.tensors], dim=1)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, None]:
        if self.tensors is not None:
            return self._gather(self._order.next_batch(batch_size)[0]), None
        parts = [r.next_batch(batch_size)[0] for r in self.readers]
        from saekit.activations.aligned import check_batch_tokens

        check_batch_tokens(dict(zip(self.names, (r.source for r in self.readers))))
        return torch.stack(parts, dim=1), None

    def sample(self, n: int) -> tuple[torch.Tensor, None] | None:
        if self.tensors is None:
            return None
        return self._gather(self._order.sample(n)[0]), None

    def state_dict(self) -> dict:
        if self.tensors is not None:
            return {"order": self._order.state_dict()}
        return {"readers": {name: r.state_dict() for name, r in zip(self.names, self.readers)}}

    def load_state_dict(self, state: dict) -> None:
        if self.tensors is not None:
            self._order.load_state_dict(state["order"])
            return
        saved = state.get("readers", {})
        if sorted(saved) != sorted(self.names):
            raise DataError(f"the checkpoint was taken on sources {sorted(saved)} but this run has {sorted(self.names)}.")
        for name, r in zip(self.names, self.readers):
            r.load_state_dict(saved[name])

    def close(self) -> None:
        for r in self.readers or []:
            if hasattr(r.source, "close"):
                r.source.close()


def _norm_scales(sample: torch.Tensor) -> torch.Tensor:
    """Per source the factor making E||x||² = d: [M, 1] for a sample [N, M, d]."""
    ms = sample.float().pow(2).sum(-1).mean(0).clamp_min(1e-12)
    return (sample.shape[-1] / ms).sqrt().reshape(-1, 1)


def as_source(source: Any, seed: int = 0) -> BatchSource:
    """Turn a Tensor, an (X, Y) pair, or an activations object into a BatchSource."""
    if isinstance(source, BatchSource):
        return source
    if isinstance(source, torch.Tensor):
        return TensorSource(source, None, seed=seed)
    if isinstance(source, dict):  # {source name: activations} of the same tokens: a crosscoder
        return MultiSource(source, seed=seed)
    if isinstance(source, (tuple, list)) and len(source) == 2 and all(isinstance(t, torch.Tensor) for t in source):
        return TensorSource(source[0], source[1], seed=seed)
    if hasattr(source, "next_batch") and hasattr(source, "d_in"):
        return ActivationSourceAdapter(source)
    raise DataError(
        f"cannot train from a {type(source).__name__}; expected a Tensor [N, d_in], a pair (X, Y), "
        "an ActivationCache, an ActivationStream, or a dict {source name: one of these} for a crosscoder."
    )


def _describe(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return f"a tensor of shape {tuple(t.shape)}"
    return f"a {type(t).__name__}"


def check_sources(cfg: Any, src: BatchSource, which: str = "") -> Any:
    """``cfg`` with the source names of a multi-source ``src``; a clear error when the number of
    sources in the config and in the data differ."""
    n_src = getattr(src, "n_sources", 1)
    if cfg.n_sources != n_src:
        if n_src == 1:
            raise DataError(
                f"dictionary{which} is a crosscoder over {cfg.n_sources} sources but the source is a single "
                "activation set; pass a dict {source name: activations} with one entry per model."
            )
        raise DataError(
            f"the source holds {n_src} models ({', '.join(src.names)}) but dictionary{which} has "
            f"n_sources={cfg.n_sources}; set n_sources={n_src}."
        )
    if n_src > 1 and cfg.source_names is None:
        return cfg.replace(source_names=src.names)
    if n_src > 1 and tuple(cfg.source_names) != tuple(src.names):
        raise DataError(f"dictionary{which} names its sources {list(cfg.source_names)} but the data has {list(src.names)}.")
    return cfg
