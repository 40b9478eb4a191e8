"""Latent-sharded (tensor-parallel) TopK dictionary, for dictionaries too wide for one device.

Rank r of a group of N holds latents ``[start_r, stop_r)``: columns of ``W_enc`` and ``b_enc``
and rows of ``W_dec``; ``b_dec`` (and ``W_skip``) are replicated. Every rank sees the same
input batch. ``ShardedTopK`` is a ``TopKDictionary``: the loss, AuxK, Multi-TopK and the
decoder constraints are the parent's; it replaces only the pieces that touch every latent
(Gao et al. 2024, section on scaling):

1. ``pre_acts``: each rank computes its pre-activations ``[B, n/N]``;
2. ``select``: local top-k, values and global indices all-gathered (``[B, N·k]``), global
   top-k, so every rank knows the k winners of each row;
3. ``decode_rows``: each rank sums the decoder rows of the winners it owns (a partial
   ``[B, d_out]``) and the partials are all-reduced;
4. ``fired_mask`` / ``count_dead``: this rank's latents / the dead count of every rank.

Autograd follows the Megatron pattern, so gradients equal the unsharded dictionary's: the
all-gather's backward keeps this rank's slice (the loss is replicated, so its gradient is the
same on every rank); the all-reduce's backward is the identity; the encoder input passes a
"copy" whose backward all-reduces (each rank's encoder sees only its latents' share of
d loss/d x and d loss/d b_dec).

Communication per step is O(B·k·N) for the top-k and O(B·d_out) for the decoder sum, never
O(B·n): what makes a 1M-latent dictionary fit on several devices without gathering codes.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from saekit.config import DictionaryConfig
from saekit.dictionaries.base import sparse_decode
from saekit.dictionaries.topk import TopKDictionary
from saekit.errors import ConfigError
from saekit.parallel import comm


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


class ShardedTopK(TopKDictionary):
    """One rank's shard of a TopK dictionary (or TopK transcoder / skip transcoder).

    Build it with ``ShardedTopK.from_full(sae)`` (every rank holds the same full dictionary,
    e.g. created from the same seed) or ``ShardedTopK(cfg)`` and load weights; gather the full
    ``TopKDictionary`` back into CPU memory with ``gather_full()`` (a collective).
    ``self.cfg`` is the whole dictionary's config; the parameters hold ``n_local`` latents.
    """

    def __init__(self, cfg: DictionaryConfig, group=None):
        if cfg.kind != "topk":
            raise ConfigError(f"latent sharding supports kind 'topk', got {cfg.kind!r}.")
        if cfg.decoder_norm != "unit":
            raise ConfigError("latent sharding needs unit decoder rows (decoder_norm 'unit'), got decoder_norm 'free'.")
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        bounds = latent_bounds(cfg.n_latents, world)
        smallest = min(b - a for a, b in bounds)
        if smallest < cfg.k:
            raise ConfigError(
                f"k ({cfg.k}) must be at most the latents per rank ({smallest} = n_latents "
                f"{cfg.n_latents} / {world} ranks); use fewer ranks or more latents."
            )
        start, stop = bounds[rank]
        # The parent allocates parameters for the latents of this rank only.
        super().__init__(dataclasses.replace(cfg, n_latents=stop - start))
        self.cfg, self.group = cfg, group
        self.rank, self.world = rank, world
        self.start, self.stop, self.smallest = start, stop, smallest

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
    def gather_full(self, dst: int | None = None) -> TopKDictionary | None:
        """The whole dictionary in CPU memory on rank ``dst`` (on every rank when None), None on
        the others; a collective. Shards travel one at a time, so no device ever holds more
        than its own shard and one other: a dictionary wider than any device can be saved."""
        receive = dst is None or self.rank == dst
        full = TopKDictionary(self.cfg) if receive else None  # CPU
        dev = comm.comm_device()
        mine = (self.W_enc.T, self.b_enc, self.W_dec)  # latent-major views of the sharded tensors
        for r, (a, b) in enumerate(latent_bounds(self.cfg.n_latents, self.world)):
            src = r if self.group is None else dist.get_global_rank(self.group, r)
            for i, t in enumerate(mine):
                if r == self.rank:
                    buf = t.detach().contiguous().to(dev)
                else:
                    buf = torch.empty((b - a, *t.shape[1:]), dtype=t.dtype, device=dev)
                if dst is None:
                    comm.broadcast(buf, src, "the sharded dictionary gather", group=self.group)
                elif r != dst and self.rank in (r, dst):
                    if self.rank == r:
                        comm.send(buf, dst, "sending a dictionary shard to the writing rank")
                    else:
                        comm.recv(buf, src, "receiving a dictionary shard")
                if full is not None:
                    (full.W_enc.T, full.b_enc, full.W_dec)[i][a:b].copy_(buf.cpu())
        if full is not None:
            full.b_dec.copy_(self.b_dec.cpu())
            if self.W_skip is not None:
                full.W_skip.copy_(self.W_skip.cpu())
            full.act_scale.copy_(self.act_scale.cpu())
        return full

    # ------------------------------------------------------------------ what touches every latent
    def pre_acts(self, xs: torch.Tensor) -> torch.Tensor:
        """This rank's pre-activations [B, n_local] of scaled inputs ``xs`` (replicated)."""
        if self.apply_b_dec_to_input:
            xs = xs - self.b_dec
        return _CopyToShards.apply(xs, self.group) @ self.W_enc + self.b_enc

    def select(self, pre_local: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global (values, indices) [B, k] of the k largest ReLU'd pre-activations per row."""
        k_local = min(k, self.smallest)  # the same on every rank: the all-gather needs equal sizes
        vals, idx = pre_local.topk(k_local, dim=-1, sorted=False)
        all_vals = _GatherLast.apply(vals, self.group)  # [B, world·k_local], differentiable
        all_idx = torch.cat(comm.all_gather(idx + self.start, "the sharded top-k all-gather", group=self.group), -1)
        top, pos = all_vals.topk(min(k, all_vals.shape[-1]), dim=-1, sorted=False)
        return torch.relu(top), all_idx.gather(-1, pos)

    def decode_rows(self, vals: torch.Tensor, idx: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Σ vals·W_dec[idx] over all ranks: each sums the rows it owns, then all-reduce."""
        mine = (idx >= self.start) & (idx < self.stop)
        local_idx = torch.where(mine, idx - self.start, torch.zeros_like(idx))
        partial = sparse_decode(local_idx, vals * mine, self.W_dec, None)
        out = _ReduceFromShards.apply(partial, self.group)
        return out if bias is None else out + bias

    def fired_mask(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """[n_local] bool: this rank's latents active on at least one row."""
        owned = (vals > 0) & (idx >= self.start) & (idx < self.stop)
        fired = torch.zeros(self.n_local, dtype=torch.bool, device=vals.device)
        fired[idx[owned] - self.start] = True
        return fired

    def count_dead(self, dead_mask: torch.Tensor) -> int:
        """Dead latents of every shard (``dead_mask`` is this rank's [n_local] slice)."""
        n = dead_mask.sum().reshape(1).to(torch.long)
        comm.all_reduce(n, what="the dead-latent count all-reduce", group=self.group)
        return int(n)

    def fused_encoder(self):
        return None  # the kernel's top-k is local; the sharded top-k needs the gather above

    def activation(self, pre_local: torch.Tensor) -> torch.Tensor:
        """Dense global codes [B, n_latents] (gathers every latent: for small batches and tests)."""
        vals, idx = self.select(pre_local, self.cfg.k)
        z = torch.zeros(pre_local.shape[0], self.cfg.n_latents, dtype=vals.dtype, device=vals.device)
        return z.scatter(-1, idx, vals)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction from dense global codes [B, n_latents]."""
        part = z[:, self.start : self.stop] @ self.W_dec
        return (_ReduceFromShards.apply(part, self.group) + self.b_dec) / self.act_scale

    def decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Reconstruction (without the skip path) from global sparse codes [B, k]."""
        return self.decode_rows(vals, idx, self.b_dec) / self.act_scale

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"kind=topk, d_in={c.d_in}, n_latents={c.n_latents} (this rank: {self.start}..{self.stop}), "
            f"d_out={c.d_out}, k={c.k}, ranks={self.world}"
        )
