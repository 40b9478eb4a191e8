"""Live activations: a model runs in a background thread and feeds a shuffled mixing buffer.

The buffer holds ``buffer_tokens`` rows in random order (seeded). Batches are served from it;
once ``refill_fraction`` of it has been served, those slots are overwritten with freshly
generated rows and the whole buffer is re-permuted. A producer thread computes the next refill
(the model's forward pass over the next token batches) while the trainer consumes the current
one; ``wait_fraction`` reports how much of the time the trainer still had to wait.

Everything that decides the order (token batches, refill sizes, the generator) is independent
of thread timing, so the same seed gives the same batches, and ``state_dict()`` (buffer, order,
generator, producer cursor) resumes exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch

from saekit.activations.hookpoints import HookpointReader, bos_token_id, keep_mask, special_token_ids
from saekit.activations.normalize import norm_scale_of
from saekit.activations.prefetch import Prefetcher
from saekit.activations.shards import META_KEYS
from saekit.errors import ConfigError, DataError

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class _Producer:
    """Runs the model over token batches (cycling over the tokens) and cuts the kept rows into
    chunks of exactly ``chunk`` rows. A cursor (pass, batch start, rows to skip) says where the
    next chunk starts, so production can restart anywhere."""

    def __init__(self, reader: HookpointReader, tokens, doc_ids, keep, batch_seqs: int, chunk: int, with_meta: bool):
        self.reader, self.tokens, self.doc_ids, self.keep = reader, tokens, doc_ids, keep
        self.batch_seqs, self.chunk, self.with_meta = batch_seqs, chunk, with_meta
        self.positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)

    def chunks(self, cursor: tuple[int, int, int]) -> Iterator[tuple[dict[str, torch.Tensor], tuple[int, int, int]]]:
        passes, start, skip = cursor
        parts: dict[str, list[torch.Tensor]] = {}
        have = 0
        n_seq = self.tokens.shape[0]
        while True:
            rows = slice(start, start + self.batch_seqs)
            k = self.keep[rows]
            acts = self.reader(self.tokens[rows].to(self.reader.device))
            kd = k.to(next(iter(acts.values())).device)
            got = {hp: a[kd].float() for hp, a in acts.items()}
            if self.with_meta:
                got.update(
                    token_ids=self.tokens[rows][k],
                    doc_ids=self.doc_ids[rows][k],
                    positions=self.positions[rows][k],
                )
            n = int(k.sum())
            lo = skip
            while lo < n:
                take = min(n - lo, self.chunk - have)
                for key, v in got.items():
                    parts.setdefault(key, []).append(v[lo : lo + take])
                have += take
                lo += take
                if have == self.chunk:
                    # the cursor after this chunk: same batch, `lo` rows in (or the next batch)
                    nxt = (passes, start, lo) if lo < n else _advance(passes, start, self.batch_seqs, n_seq)
                    yield {key: torch.cat(v) for key, v in parts.items()}, nxt
                    parts, have = {}, 0
            passes, start, skip = _advance(passes, start, self.batch_seqs, n_seq)


def _advance(passes: int, start: int, step: int, n: int) -> tuple[int, int, int]:
    start += step
    if start >= n:
        return passes + 1, 0, 0
    return passes, start, 0


class ActivationStream:
    """Shuffled activations computed live from ``model`` over ``tokens`` [n_seq, n_ctx].

    hookpoint: a name, or an (input, output) pair for transcoders (tuples (x, y) of the same
      tokens). The tokens are cycled over when exhausted (``passes`` in ``state_dict``).
    buffer_tokens: rows in the mixing buffer (on ``buffer_device``); refill_fraction: the share
      of the buffer replaced by fresh rows at each refill.
    normalize: scale rows so E||x||^2 = d, with the scale estimated once from the first full
      buffer (``self.norm_scale``).
    """

    def __init__(
        self,
        model: Any,
        tokens: torch.Tensor,
        hookpoint: str | tuple[str, str] | list[str],
        *,
        doc_ids: torch.Tensor | None = None,
        buffer_tokens: int = 1 << 16,
        refill_fraction: float = 0.5,
        seed: int = 0,
        batch_seqs: int = 8,
        drop_bos: bool = True,
        exclude_special: bool = False,
        normalize: bool = False,
        with_meta: bool = False,
        buffer_device: str | torch.device = "cpu",
        device: str | torch.device | None = None,
        prefetch: bool = True,
        tokenizer: Any = None,
    ):
        keys = [hookpoint] if isinstance(hookpoint, str) else list(hookpoint)
        if len(keys) not in (1, 2):
            raise ConfigError(f"hookpoint must be one name or an (input, output) pair, got {hookpoint!r}.")
        if not 0 < refill_fraction <= 1:
            raise ConfigError(f"refill_fraction must be in (0, 1], got {refill_fraction}.")
        if not isinstance(buffer_tokens, int) or buffer_tokens <= 0:
            raise ConfigError(f"buffer_tokens must be a positive integer, got {buffer_tokens!r}.")
        tokens = torch.as_tensor(tokens)
        if tokens.dim() != 2:
            raise ConfigError(f"tokens must be a tensor [n_seq, n_ctx], got shape {tuple(tokens.shape)}.")
        if doc_ids is None:
            doc_ids = torch.arange(tokens.shape[0]).unsqueeze(1).expand_as(tokens)
        self.reader = HookpointReader(model, keys)
        self.hookpoints = keys
        self.paired = len(keys) == 2
        tok = tokenizer if tokenizer is not None else self.reader.info.tokenizer
        if exclude_special and not special_token_ids(tok):
            raise ConfigError("exclude_special needs a tokenizer that lists its special tokens; pass tokenizer=.")
        keep = keep_mask(
            tokens,
            drop_bos=drop_bos,
            bos_id=bos_token_id(tok),
            exclude_ids=special_token_ids(tok) if exclude_special else (),
        )
        if int(keep.sum()) == 0:
            raise DataError("the tokens given to ActivationStream have no usable position (all BOS/special).")
        self.refill_tokens = max(1, int(buffer_tokens * refill_fraction))
        self.buffer_tokens = max(1, buffer_tokens // self.refill_tokens) * self.refill_tokens
        self.with_meta = with_meta
        self._keys = keys + (list(META_KEYS) if with_meta else [])
        self._producer = _Producer(self.reader, tokens, doc_ids, keep, batch_seqs, self.refill_tokens, with_meta)
        self.buffer_device = torch.device(buffer_device)
        self.device = torch.device(device) if device is not None else self.buffer_device
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self._prefetch = prefetch
        self._cursor = (0, 0, 0)  # producer position of the next chunk to enter the buffer
        self._waited = 0.0
        self._t_first: float | None = None
        self._prefetcher: Prefetcher | None = None
        self._buf: dict[str, torch.Tensor] | None = None
        self.tokens_served = 0
        self.last_meta: dict[str, torch.Tensor] | None = None
        self.normalize = normalize
        self._scales = [1.0] * len(keys)
        self._fill_initial()
        self._waited = 0.0  # the first fill is setup; waiting is counted from the first batch
        d = [self._buf[k].shape[1] for k in keys]
        self.d_in, self.d_out = d[0], d[-1]
        scales = [norm_scale_of(self._buf[k]) for k in keys]
        self.norm_scale: float | tuple[float, float] = tuple(scales) if self.paired else scales[0]
        if normalize:
            self._scales = scales

    # -- producer thread ------------------------------------------------------------------------
    def _next_chunk(self) -> dict[str, torch.Tensor]:
        if self._prefetcher is None:  # one refill ready, one being computed
            chunks = self._producer.chunks(self._cursor)
            self._prefetcher = Prefetcher(lambda stop: chunks, background=self._prefetch, name="saekit-stream")
        chunk, self._cursor = self._prefetcher.next()
        self._waited += self._prefetcher.last_wait
        return chunk

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- buffer -----------------------------------------------------------------------------------
    def _fill_initial(self) -> None:
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in self._keys}
        for _ in range(self.buffer_tokens // self.refill_tokens):
            chunk = self._next_chunk()
            for k in self._keys:
                parts[k].append(chunk[k].to(self.buffer_device))
        self._buf = {k: torch.cat(v) for k, v in parts.items()}
        self._perm = torch.randperm(self.buffer_tokens, generator=self._gen)
        self._pos = 0

    def _refill(self) -> None:
        """Overwrite the served slots with a fresh chunk, then re-permute the whole buffer."""
        chunk = self._next_chunk()
        slots = self._perm[: self.refill_tokens].to(self.buffer_device)
        for k in self._keys:
            self._buf[k][slots] = chunk[k].to(self.buffer_device, self._buf[k].dtype)
        self._perm = torch.randperm(self.buffer_tokens, generator=self._gen)
        self._pos = 0

    def next_batch(self, batch_size: int) -> Batch:
        if self._t_first is None:
            self._t_first = time.perf_counter()
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in self._keys}
        need = batch_size
        while need:
            if self._pos == self.refill_tokens:
                self._refill()
            take = min(need, self.refill_tokens - self._pos)
            idx = self._perm[self._pos : self._pos + take].to(self.buffer_device)
            for k in self._keys:
                parts[k].append(self._buf[k].index_select(0, idx))
            self._pos += take
            need -= take
        self.tokens_served += batch_size
        out = []
        for i, hp in enumerate(self.hookpoints):
            x = torch.cat(parts[hp]).to(self.device, torch.float32, non_blocking=True)
            out.append(x * self._scales[i] if self._scales[i] != 1.0 else x)
        if self.with_meta:
            self.last_meta = {k: torch.cat(parts[k]) for k in META_KEYS}
        return (out[0], out[1]) if self.paired else out[0]

    def batches(self, batch_size: int, epochs: float | None = None) -> Iterator[Batch]:
        """Endless shuffled batches (``epochs`` is accepted for interface parity and ignored)."""
        while True:
            yield self.next_batch(batch_size)

    iter_batches = batches  # the name saekit.training looks for

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(4096)

    @property
    def wait_fraction(self) -> float:
        if self._t_first is None:
            return 0.0
        return self._waited / max(time.perf_counter() - self._t_first, 1e-9)

    # -- exact resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Buffer contents, order, generator and producer cursor (the buffer makes it exact)."""
        return {
            "buffer": {k: v.cpu().clone() for k, v in self._buf.items()},
            "perm": self._perm.clone(),
            "pos": self._pos,
            "rng": self._gen.get_state(),
            "cursor": list(self._cursor),
            "tokens_served": self.tokens_served,
            "seed": self.seed,
            "scales": list(self._scales),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["buffer"]) != set(self._keys):
            raise ConfigError(
                f"stream state holds {sorted(state['buffer'])} but this stream reads {sorted(self._keys)}; "
                "create it with the same hookpoints and with_meta."
            )
        self.close()
        self._buf = {k: v.to(self.buffer_device).clone() for k, v in state["buffer"].items()}
        self.buffer_tokens = next(iter(self._buf.values())).shape[0]
        self._perm = state["perm"].clone()
        self._pos = int(state["pos"])
        self._gen.set_state(state["rng"])
        self._cursor = tuple(int(c) for c in state["cursor"])
        self.tokens_served = int(state["tokens_served"])
        self._scales = [float(s) for s in state["scales"]]
