"""Training latent-sharded TopK dictionaries with the ordinary ``Trainer`` loop.

Every rank reads the same batches (the whole global batch), holds 1/N of each dictionary's
latents (``ShardedTopK``) with their Adam state and dead-latent counters, and runs the same
step as one process: the sharded top-k makes the loss, the codes and every gradient equal to
the unsharded dictionary's. Two things need the whole dictionary and are done across ranks:
gradient-norm clipping (the norm of all shards, replicated parameters counted once) and the
dead fraction that is logged. Each rank writes its own checkpoint file
(``checkpoint.rank{r}-of-{N}.pt``, its shards and optimiser state); rank 0 writes the metrics
and, at the end, the gathered full dictionaries (the ordinary SAELens-compatible folders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from saekit.config import DictionaryConfig, TrainConfig
from saekit.dictionaries import SparseDictionary, create
from saekit.dictionaries.sharded import ShardedTopK, latent_bounds
from saekit.errors import ConfigError
from saekit.training import dist_comm as comm
from saekit.training.dead import DeadLatentTracker
from saekit.training.loop import Run, Trainer
from saekit.training.metrics import MetricsLog


class LatentShardedTrainer(Trainer):
    """``Trainer`` for TopK dictionaries whose latents are split across the ranks of the group."""

    def __init__(
        self,
        cfgs: DictionaryConfig | list[DictionaryConfig],
        source: Any,
        tcfg: TrainConfig | None = None,
        names: list[str] | None = None,
        progress: bool = True,
    ):
        info = comm.dist_info()
        self.rank, self.n_shards = info.rank, info.world_size  # world_size stays 1: data is not split
        for c in [cfgs] if isinstance(cfgs, DictionaryConfig) else cfgs:
            if isinstance(c, DictionaryConfig) and c.kind != "topk":
                raise ConfigError(f"latent sharding trains kind 'topk' dictionaries, got {c.kind!r}.")
        super().__init__(cfgs, source, tcfg, names=names, progress=progress)
        if self.rank != 0:
            self.metrics = MetricsLog(None)

    def _make_run(self, cfg: DictionaryConfig, name: str) -> Run:
        seed = self.tcfg.seed if cfg.seed is None else cfg.seed
        shard = self._initial_shard(cfg, seed).to(self.device)
        lr = self.tcfg.learning_rate(cfg.n_latents)
        opt = torch.optim.Adam(shard.parameters(), lr=lr, betas=self.tcfg.adam_betas)
        tracker = DeadLatentTracker(shard.n_local, self.tcfg.dead_token_window(), self.device)
        return Run(name, shard, opt, lr, tracker, torch.Generator().manual_seed(seed + 104729))

    @torch.no_grad()
    def _initial_shard(self, cfg: DictionaryConfig, seed: int) -> ShardedTopK:
        """The seeded full initialisation (the same bytes as one process's), built on rank 0
        only and sent out shard by shard, so the other ranks never hold the whole dictionary."""
        if self.rank == 0:
            full = create(cfg, seed=seed)
            for r in range(1, self.n_shards):
                a, b = latent_bounds(cfg.n_latents, self.n_shards)[r]
                for t in (full.W_enc[:, a:b], full.b_enc[a:b], full.W_dec[a:b]):
                    comm.send(t.contiguous().to(comm.comm_device()), r, "sending the initial dictionary shards")
            return ShardedTopK.from_full(full)
        shard = ShardedTopK(cfg)
        for t in (shard.W_enc, shard.b_enc, shard.W_dec):
            got = comm.recv(torch.empty(t.shape, device=comm.comm_device()), 0, "receiving the initial dictionary shard")
            t.copy_(got.to(t.device))
        # b_dec and W_skip start at zero in every init (b_dec is then set from the sample).
        return shard

    def _note(self) -> str:
        return "; each rank's last checkpoint is intact, restart every rank with resume"

    # ------------------------------------------------------------------ whole-dictionary pieces
    @torch.no_grad()
    def reduce_gradients(self, sae: ShardedTopK) -> None:
        """Clip by the norm of the whole dictionary (the Trainer's own clip, on this rank's
        parameters, then finds a norm below the limit and leaves the gradients as they are)."""
        clip = self.tcfg.grad_clip
        if not clip or clip <= 0:
            return
        sharded = [p.grad for p in (sae.W_enc, sae.b_enc, sae.W_dec) if p.grad is not None]
        replicated = [p.grad for p in (sae.b_dec, sae.W_skip) if p is not None and p.grad is not None]
        sq = torch.stack([g.double().pow(2).sum() for g in sharded]).sum() if sharded else torch.zeros((), dtype=torch.float64)
        sq = sq.reshape(1).to(self.device)
        comm.all_reduce(sq, what="the gradient-norm all-reduce", note=self._note())
        total = float(sq) + sum(float(g.double().pow(2).sum()) for g in replicated)
        norm = total**0.5
        coef = clip / (norm + 1e-6)
        if coef < 1.0:
            for g in sharded + replicated:
                g.mul_(coef)

    @torch.no_grad()
    def _record(self, run: Run, out, x, y, lr: float) -> dict[str, Any]:
        rec = super()._record(run, out, x, y, lr)
        dead = run.tracker.dead_mask().sum().reshape(1).to(torch.long)
        comm.all_reduce(dead, what="the dead-latent count all-reduce", note=self._note())
        rec["dead_fraction"] = float(dead) / run.sae.n_latents
        return rec

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path | None:
        if self.out_dir is None:
            return None
        return self.out_dir / f"checkpoint.rank{self.rank}-of-{self.n_shards}.pt"

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        from saekit.training.checkpoint import save_checkpoint

        path = Path(path) if path is not None else self.checkpoint_path()
        if path is None:
            return None
        return save_checkpoint(path, {**self.state_dict(), "rank": self.rank, "n_shards": self.n_shards})

    def resume(self, path: str | Path | None = None) -> Trainer:
        super().resume(path)
        steps = torch.tensor([self.step_count, self.step_count], dtype=torch.long, device=comm.comm_device())
        lo, hi = steps[:1].clone(), steps[1:].clone()
        comm.all_reduce(lo, dist.ReduceOp.MIN, "the resume step check")
        comm.all_reduce(hi, dist.ReduceOp.MAX, "the resume step check")
        if int(lo) != int(hi):
            raise ConfigError(
                f"the shard checkpoints in {self.out_dir} are of different steps ({int(lo)} to {int(hi)}): "
                "a rank died while they were being written; restart without resume."
            )
        return self

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("n_shards") != self.n_shards or state.get("rank") != self.rank:
            raise ConfigError(
                f"the checkpoint holds shard {state.get('rank')} of {state.get('n_shards')} but this is "
                f"rank {self.rank} of {self.n_shards}; resume with the same number of ranks."
            )
        super().load_state_dict(state)

    # ------------------------------------------------------------------ outputs
    def save_dictionaries(self) -> list[Path]:
        return []  # Trainer.fit calls this on rank 0 only; the gather below needs every rank

    def fit(self) -> list[SparseDictionary]:
        super().fit()
        shards = [run.sae for run in self.runs]
        fulls = [s.gather_full() for s in shards]  # a collective: every rank, same order
        if self.out_dir is not None and self.rank == 0:
            for run, full in zip(self.runs, fulls):
                run.sae = full
            try:
                Trainer.save_dictionaries(self)
            finally:
                for run, shard in zip(self.runs, shards):
                    run.sae = shard
        comm.barrier("the end-of-training barrier")
        return fulls
