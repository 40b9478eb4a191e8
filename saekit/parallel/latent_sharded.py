"""Latent sharding as a Trainer strategy (``LatentSharded``): TopK dictionaries whose latents
are split across the ranks, trained with the ordinary ``Trainer`` loop.

Every rank reads the same batches (the whole global batch, so a step covers as many tokens as
one process's), holds 1/N of each dictionary's latents (``ShardedTopK``) with their Adam state
and dead-latent counters, and runs the same step as one process: the sharded top-k makes the
loss, the codes and every gradient equal to the unsharded dictionary's. The strategy supplies
what needs more than one shard:

* gradient reduction: sharded parameters' gradients are already complete; the replicated ones
  (``b_dec``, ``W_skip``) take rank 0's, so the replicas can never drift apart;
* clipping by the norm of the whole dictionary (replicated parameters counted once);
* the logged dead fraction over every latent;
* checkpoints: each rank writes its own (``checkpoint.rank{r}-of-{N}.pt``, its shards and
  optimiser state) and a resume checks that every rank's is of the same step;
* the final assembly: shards travel one at a time into CPU memory on the writing rank (rank 0,
  which writes the ordinary SAELens-compatible folders), or on every rank (``full_on="all"``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from saekit.config import DictionaryConfig, TrainConfig
from saekit.dictionaries import SparseDictionary, create
from saekit.errors import ConfigError
from saekit.parallel import comm
from saekit.parallel.sharded_topk import ShardedTopK, latent_bounds
from saekit.training.checkpoint import load_checkpoint
from saekit.training.loop import Trainer
from saekit.training.strategy import Solo

NOTE = "; each rank's last checkpoint is intact, restart every rank with resume"


class LatentSharded(Solo):
    """Every rank the same rows, 1/N of every TopK dictionary's latents."""

    collective_encode = True  # a shard encodes together with the others

    def __init__(self, full_on: str = "all"):
        super().__init__()
        if full_on not in ("all", "writer"):
            raise ConfigError(f"full_on must be 'all' or 'writer', got {full_on!r}.")
        info = comm.dist_info()
        self.rank, self.world_size = info.rank, info.world_size
        self.writes = self.rank == 0  # metrics and the assembled dictionaries; every rank checkpoints
        self.full_on = full_on

    # ------------------------------------------------------------------ set-up
    def make_dictionary(self, cfg: DictionaryConfig, seed: int, device: torch.device) -> SparseDictionary:
        if cfg.kind != "topk":
            raise ConfigError(f"latent sharding trains kind 'topk' dictionaries, got {cfg.kind!r}.")
        return self._initial_shard(cfg, seed).to(device)

    @torch.no_grad()
    def _initial_shard(self, cfg: DictionaryConfig, seed: int) -> ShardedTopK:
        """The seeded full initialisation (the same bytes as one process's), built on rank 0
        only and sent out shard by shard, so the other ranks never hold the whole dictionary."""
        if self.rank == 0:
            full = create(cfg, seed=seed)
            for r in range(1, self.world_size):
                a, b = latent_bounds(cfg.n_latents, self.world_size)[r]
                for t in (full.W_enc[:, a:b], full.b_enc[a:b], full.W_dec[a:b]):
                    comm.send(t.contiguous().to(comm.comm_device()), r, "sending the initial dictionary shards")
            return ShardedTopK.from_full(full)
        shard = ShardedTopK(cfg)
        for t in (shard.W_enc, shard.b_enc, shard.W_dec):
            got = comm.recv(torch.empty(t.shape, device=comm.comm_device()), 0, "receiving the initial dictionary shard")
            t.copy_(got.to(t.device))
        # b_dec and W_skip start at zero in every init (b_dec is then set from the sample).
        return shard

    def agree(self, value: float) -> float:
        """The mean over the ranks (each may have measured its own rows)."""
        return comm.mean_over_ranks(value, "the data-spread average")

    def latents_here(self, sae: SparseDictionary) -> int:
        return sae.n_local

    # ------------------------------------------------------------------ whole-dictionary pieces
    @torch.no_grad()
    def reduce_gradients(self, sae: ShardedTopK) -> None:
        """The sharded gradients are complete (the sharded top-k's autograd sums across ranks);
        the replicated parameters' are equal by construction, up to the collectives' rounding
        on GPUs: take rank 0's so the replicas stay the same bytes."""
        for p in (sae.b_dec, sae.W_skip):
            if p is not None and p.grad is not None:
                got = comm.broadcast(p.grad.to(comm.comm_device()), 0, "the replicated-gradient broadcast", note=NOTE)
                p.grad.copy_(got)

    @torch.no_grad()
    def clip_gradients(self, sae: ShardedTopK, max_norm: float) -> None:
        """Clip by the norm of the whole dictionary: shards' squares summed across ranks,
        replicated parameters counted once."""
        sharded = [p.grad for p in (sae.W_enc, sae.b_enc, sae.W_dec) if p.grad is not None]
        replicated = [p.grad for p in (sae.b_dec, sae.W_skip) if p is not None and p.grad is not None]
        sq = torch.stack([g.double().pow(2).sum() for g in sharded]).sum() if sharded else torch.zeros((), dtype=torch.float64)
        sq = sq.reshape(1).to(comm.comm_device())
        comm.all_reduce(sq, what="the gradient-norm all-reduce", note=NOTE)
        total = float(sq) + sum(float(g.double().pow(2).sum()) for g in replicated)
        coef = max_norm / (total**0.5 + 1e-6)
        if coef < 1.0:
            for g in sharded + replicated:
                g.mul_(coef)

    @torch.no_grad()
    def reduce_record(self, rec: dict[str, Any], run: Any, out: Any, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        dead = run.tracker.dead_mask().sum().reshape(1).to(torch.long).to(comm.comm_device())
        comm.all_reduce(dead, what="the dead-latent count all-reduce", note=NOTE)
        rec["dead_fraction"] = float(dead) / run.sae.n_latents
        return rec

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path | None:
        if self.out_dir is None:
            return None
        return self.out_dir / f"checkpoint.rank{self.rank}-of-{self.world_size}.pt"

    def checkpoint_state(self, make_state: Callable[[], dict[str, Any]], source: Any) -> dict[str, Any] | None:
        return {**make_state(), "rank": self.rank, "n_shards": self.world_size}

    def load_state(self, path: str | Path) -> dict[str, Any]:
        state = load_checkpoint(path)
        if state.get("n_shards") != self.world_size or state.get("rank") != self.rank:
            raise ConfigError(
                f"the checkpoint holds shard {state.get('rank')} of {state.get('n_shards')} but this is "
                f"rank {self.rank} of {self.world_size}; resume with the same number of ranks."
            )
        steps = torch.tensor([int(state["step"])] * 2, dtype=torch.long, device=comm.comm_device())
        lo, hi = steps[:1].clone(), steps[1:].clone()
        comm.all_reduce(lo, dist.ReduceOp.MIN, "the resume step check")
        comm.all_reduce(hi, dist.ReduceOp.MAX, "the resume step check")
        if int(lo) != int(hi):
            raise ConfigError(
                f"the shard checkpoints in {self.out_dir} are of different steps ({int(lo)} to {int(hi)}): "
                "a rank died while they were being written; restart without resume."
            )
        return state

    # ------------------------------------------------------------------ the end
    def assemble(self, saes: list[SparseDictionary]) -> list[SparseDictionary]:
        """The whole dictionaries in CPU memory (on the writing rank only with
        ``full_on="writer"``; the other ranks then return their shards)."""
        dst = None if self.full_on == "all" else 0
        fulls = [shard.gather_full(dst) for shard in saes]  # a collective: every rank, same order
        return [full if full is not None else shard for full, shard in zip(fulls, saes)]

    def finish(self) -> None:
        comm.barrier("the end-of-training barrier")


class LatentShardedTrainer(Trainer):
    """The ordinary ``Trainer`` with the ``LatentSharded`` strategy (call ``init_distributed``
    first); ``fit()`` returns the full dictionaries in CPU memory on every rank."""

    def __init__(
        self,
        cfgs: DictionaryConfig | list[DictionaryConfig],
        source: Any,
        tcfg: TrainConfig | None = None,
        names: list[str] | None = None,
        progress: bool = True,
        full_on: str = "all",
    ):
        super().__init__(cfgs, source, tcfg, names=names, progress=progress, strategy=LatentSharded(full_on))
