"""Latent-sharded (tensor-parallel) TopK dictionary, for dictionaries too wide for one device.

Rank r of a group of N holds latents ``[start_r, stop_r)``: columns of ``W_enc`` and ``b_enc``
and rows of ``W_dec``; ``b_dec`` (and ``W_skip``) are replicated. Every rank sees the same
input batch. A forward pass (Gao et al. 2024, section on scaling):

1. each rank computes its pre-activations ``[B, n/N]`` and their local top-k;
2. values and global indices are all-gathered (``[B, N·k]``) and the global top-k taken, so
   every rank knows the k winners of each row;
3. decoding: each rank sums the decoder rows of the winners it owns (a partial ``[B, d_out]``)
   and the partials are all-reduced; ``b_dec`` is added once.

Autograd follows the Megatron pattern, so gradients equal the unsharded dictionary's: the
all-gather's backward keeps this rank's slice (the loss is replicated, so its gradient is the
same on every rank); the all-reduce's backward is the identity; the encoder input passes a
"copy" whose backward all-reduces (each rank's encoder sees only its latents' share of
d loss/d x and d loss/d b_dec).

Communication per step is O(B·k·N) for the top-k and O(B·d_out) for the decoder sum, never
O(B·n): what makes a 1M-latent dictionary fit on several devices without gathering codes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from saekit.config import DictionaryConfig
from saekit.dictionaries.base import ConfigShape, TrainOutput, sparse_decode
from saekit.dictionaries.topk import TopKDictionary
from saekit.errors import ConfigError
from saekit.training import dist_comm as comm


def latent_bounds(n_latents: int, world: int) -> list[tuple[int, int]]:
    """[start, stop) of each rank's latents: as even as possible, lower ranks take the extra."""
    base, extra = divmod(n_latents, world)
    bounds, start = [], 0
    for r in range(world):
        size = base + (1 if r < extra else 0)
        bounds.append((start, start + size))
        start += size
    return bounds


class _CopyToShards(torch.autograd.Function):
    """Forward: identity. Backward: all-reduce (sum the shards' gradients of a replicated input)."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        comm.all_reduce(grad, what="the sharded encoder's gradient all-reduce", group=ctx.group)
        return grad, None


class _ReduceFromShards(torch.autograd.Function):
    """Forward: all-reduce (sum of per-shard partials). Backward: identity (replicated grad)."""

    @staticmethod
    def forward(ctx, x, group):
        out = x.contiguous().clone()
        comm.all_reduce(out, what="the sharded decoder's all-reduce", group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _GatherLast(torch.autograd.Function):
    """Forward: all-gather along the last dim (equal sizes). Backward: this rank's slice."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group, ctx.size = group, x.shape[-1]
        ctx.rank = dist.get_rank(group)
        return torch.cat(comm.all_gather(x, "the sharded top-k all-gather", group=group), dim=-1)

    @staticmethod
    def backward(ctx, grad):
        lo = ctx.rank * ctx.size
        return grad[..., lo : lo + ctx.size].contiguous(), None


class ShardedTopK(ConfigShape, nn.Module):
    """One rank's shard of a TopK dictionary (or TopK transcoder / skip transcoder).

    Build it with ``ShardedTopK.from_full(sae)`` (every rank holds the same full dictionary,
    e.g. created from the same seed) or ``ShardedTopK(cfg)`` and load weights; gather a full
    ``TopKDictionary`` back with ``gather_full()`` (a collective: every rank calls it).
    """

    kind = "topk"
    sparse_output = True

    def __init__(self, cfg: DictionaryConfig, group=None):
        super().__init__()
        if cfg.kind != "topk":
            raise ConfigError(f"latent sharding supports kind 'topk', got {cfg.kind!r}.")
        self.cfg, self.group = cfg, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        bounds = latent_bounds(cfg.n_latents, self.world)
        smallest = min(b - a for a, b in bounds)
        if smallest < cfg.k:
            raise ConfigError(
                f"k ({cfg.k}) must be at most the latents per rank ({smallest} = n_latents "
                f"{cfg.n_latents} / {self.world} ranks); use fewer ranks or more latents."
            )
        self.start, self.stop = bounds[self.rank]
        n = self.stop - self.start
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, n))
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.zeros(n, cfg.d_out))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out))
        self.W_skip = nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in)) if cfg.skip else None
        self.register_buffer("act_scale", torch.ones(()))

    @property
    def n_local(self) -> int:
        return self.stop - self.start

    # ------------------------------------------------------------------ construction
    @classmethod
    @torch.no_grad()
    def from_full(cls, sae: TopKDictionary, group=None) -> ShardedTopK:
        """This rank's shard of ``sae`` (identical on every rank)."""
        shard = cls(sae.cfg, group).to(device=sae.W_enc.device, dtype=sae.W_enc.dtype)
        s, e = shard.start, shard.stop
        shard.W_enc.copy_(sae.W_enc[:, s:e])
        shard.b_enc.copy_(sae.b_enc[s:e])
        shard.W_dec.copy_(sae.W_dec[s:e])
        shard.b_dec.copy_(sae.b_dec)
        if shard.W_skip is not None:
            shard.W_skip.copy_(sae.W_skip)
        shard.act_scale.copy_(sae.act_scale)
        return shard

    @torch.no_grad()
    def gather_full(self) -> TopKDictionary:
        """The whole dictionary on every rank (collective; for saving and evaluation)."""
        sizes = [b - a for a, b in latent_bounds(self.cfg.n_latents, self.world)]
        width = max(sizes)

        def gather_rows(t: torch.Tensor) -> torch.Tensor:  # [n_local, ...] -> [n, ...]
            pad = torch.zeros((width - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
            parts = comm.all_gather(torch.cat([t, pad]), "the sharded dictionary gather", group=self.group)
            return torch.cat([p[:s] for p, s in zip(parts, sizes)])

        full = TopKDictionary(self.cfg).to(device=self.W_enc.device, dtype=self.W_enc.dtype)
        full.W_enc.copy_(gather_rows(self.W_enc.T.contiguous()).T)
        full.b_enc.copy_(gather_rows(self.b_enc))
        full.W_dec.copy_(gather_rows(self.W_dec))
        full.b_dec.copy_(self.b_dec)
        if self.W_skip is not None:
            full.W_skip.copy_(self.W_skip)
        full.act_scale.copy_(self.act_scale)
        return full

    # ------------------------------------------------------------------ encoding
    def scale_in(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.W_enc.dtype) * self.act_scale

    def pre_acts(self, xs: torch.Tensor) -> torch.Tensor:
        """This rank's pre-activations [B, n_local] of scaled inputs ``xs`` (replicated)."""
        if self.apply_b_dec_to_input:
            xs = xs - self.b_dec
        return _CopyToShards.apply(xs, self.group) @ self.W_enc + self.b_enc

    def select(self, pre_local: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global (values, indices) [B, k] of the k largest ReLU'd pre-activations per row."""
        k_local = min(k, pre_local.shape[-1])
        vals, idx = pre_local.topk(k_local, dim=-1, sorted=False)
        all_vals = _GatherLast.apply(vals, self.group)  # [B, world·k_local], differentiable
        all_idx = torch.cat(comm.all_gather(idx + self.start, "the sharded top-k all-gather", group=self.group), -1)
        top, pos = all_vals.topk(k, dim=-1, sorted=False)
        return torch.relu(top), all_idx.gather(-1, pos)

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, global indices) [B, k] of the active latents, the same on every rank."""
        return self.select(self.pre_acts(self.scale_in(x)), self.cfg.k)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense codes [B, n_latents] (gathers every latent: for small batches and tests)."""
        vals, idx = self.encode_sparse(x)
        return torch.zeros(x.shape[0], self.cfg.n_latents, dtype=vals.dtype, device=vals.device).scatter(-1, idx, vals)

    # ------------------------------------------------------------------ decoding
    def _decode_no_bias(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Σ vals·W_dec[idx] over all ranks: each sums the rows it owns, then all-reduce."""
        mine = (idx >= self.start) & (idx < self.stop)
        local_idx = torch.where(mine, idx - self.start, torch.zeros_like(idx))
        partial = sparse_decode(local_idx, vals * mine, self.W_dec, None)
        return _ReduceFromShards.apply(partial, self.group)

    def decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Reconstruction (without the skip path) from global sparse codes [B, k]."""
        return (self._decode_no_bias(vals, idx) + self.b_dec) / self.act_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction from dense global codes [B, n_latents]."""
        return (_ReduceFromShards.apply(z[:, self.start : self.stop] @ self.W_dec, self.group) + self.b_dec) / self.act_scale

    def skip_path(self, xs: torch.Tensor) -> torch.Tensor | float:
        return xs @ self.W_skip.T if self.W_skip is not None else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.scale_in(x)
        vals, idx = self.select(self.pre_acts(xs), self.cfg.k)
        return (self._decode_no_bias(vals, idx) + self.b_dec + self.skip_path(xs)) / self.act_scale

    # ------------------------------------------------------------------ training
    def training_loss(self, x, y=None, *, dead_mask=None, step=0) -> TrainOutput:
        """TopKDictionary.training_loss, sharded: ``dead_mask`` and ``fired`` are this rank's
        [n_local] slices; the loss, reconstruction and L0 are replicated."""
        cfg = self.cfg
        xs = self.scale_in(x)
        ys = xs if y is None else self.scale_in(y)
        pre = self.pre_acts(xs)
        vals, idx = self.select(pre, cfg.k)
        skip = self.skip_path(xs)
        y_hat = self._decode_no_bias(vals, idx) + self.b_dec + skip
        terms = {"mse": (y_hat - ys).pow(2).sum(-1).mean()}
        if cfg.multi_topk:
            v4, i4 = self.select(pre, min(4 * cfg.k, self.n_local * self.world))
            y4 = self._decode_no_bias(v4, i4) + self.b_dec + skip
            terms["multi_topk"] = (y4 - ys).pow(2).sum(-1).mean() / 8
        terms.update(self.aux_loss(ys, pre, y_hat, dead_mask))
        active = vals > 0
        owned = active & (idx >= self.start) & (idx < self.stop)
        fired = torch.zeros(self.n_local, dtype=torch.bool, device=x.device)
        fired[idx[owned] - self.start] = True
        return TrainOutput(sum(terms.values()), y_hat, fired, active.sum(-1).float().mean(), terms)

    def aux_loss(self, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        """AuxK over the dead latents of every shard (global count, sharded top-k_aux)."""
        cfg = self.cfg
        if dead_mask is None or cfg.aux_coef == 0:
            return {}
        n_dead_t = dead_mask.sum().reshape(1).to(torch.long)
        comm.all_reduce(n_dead_t, what="the dead-latent count all-reduce", group=self.group)
        n_dead = int(n_dead_t)
        if n_dead == 0:
            return {}
        k_aux = min(cfg.k_aux, n_dead)
        masked = pre.masked_fill(~dead_mask[None], float("-inf"))
        # A rank with fewer than k_aux dead latents contributes -inf entries, which never win
        # the global top-k because k_aux <= the global dead count.
        vals, idx = self.select(masked, k_aux)
        e = (ys - y_hat).detach()
        e_hat = self._decode_no_bias(vals, idx)
        scale = min(n_dead / cfg.k_aux, 1.0)
        return {"aux": cfg.aux_coef * scale * (e_hat - e).pow(2).sum(-1).mean()}

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            w = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            g = self.W_dec.grad
            g.sub_((g * w).sum(-1, keepdim=True) * w)

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    def after_step(self) -> None:
        self.set_decoder_norm_to_unit_norm()

    def to_inference(self) -> ShardedTopK:
        return self  # TopK behaves the same in training and inference

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"kind=topk, d_in={c.d_in}, n_latents={c.n_latents} (this rank: {self.start}..{self.stop}), "
            f"d_out={c.d_out}, k={c.k}, ranks={self.world}"
        )
