"""Scale-out on torch.distributed (torchrun; NCCL on GPUs, gloo on CPUs).

Three modes, one per situation (docs/scaling.md):

* **Data parallel** (``DataParallelTrainer``): every rank holds every dictionary, takes its
  1/N slice of each global batch, and gradients are all-reduced (averaged) before clipping
  and Adam, as DDP does; dead-latent "fired" masks are OR-ed and logged metrics are reduced to
  global-batch values, so N ranks follow the same trajectory as one process with the same
  global batch. Only rank 0 writes checkpoints, metrics and dictionaries; on resume rank 0
  reads the checkpoint and broadcasts it (no shared file system needed).
* **Distributed hookpoints** (``saekit.training.dist_hookpoints``): dictionaries for different
  hookpoints on different ranks; activations are produced once and sent to their owner.
* **Latent sharding** (``saekit.dictionaries.sharded``): one TopK dictionary's latents split
  across ranks, with a sharded top-k.

Every collective waits at most the group timeout (``--dist-timeout``) and then raises
``DistributedError`` with one sentence; nothing is written after a failed collective, so the
last checkpoint stays as it was.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from saekit.config import DictionaryConfig, TrainConfig
from saekit.dictionaries import SparseDictionary
from saekit.dictionaries.sharded import ShardedTopK
from saekit.errors import ConfigError, DataError, SaekitError
from saekit.training import dist_comm as comm
from saekit.training.checkpoint import load_checkpoint, save_checkpoint
from saekit.training.dist_comm import (
    DEFAULT_TIMEOUT_S,
    DistInfo,
    DistributedError,
    init_distributed,
    is_distributed_launch,
    shutdown,
)
from saekit.training.dist_hookpoints import (
    HookpointJob,
    HookpointSource,
    LiveHookSource,
    TensorHookSource,
    train_hookpoints,
)
from saekit.training.dist_sharded import LatentShardedTrainer
from saekit.training.loop import Run, Trainer
from saekit.training.metrics import MetricsLog

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DataParallelTrainer",
    "DistInfo",
    "DistributedError",
    "HookpointJob",
    "HookpointSource",
    "LatentShardedTrainer",
    "LiveHookSource",
    "ShardedTopK",
    "TensorHookSource",
    "train_hookpoints",
    "data_part",
    "init_distributed",
    "is_distributed_launch",
    "make_trainer",
    "shutdown",
    "train_data_parallel",
]


DATA_MODES = ("global", "local")


class DataParallelTrainer(Trainer):
    """``Trainer`` with DDP-style gradient averaging across the ranks of the default group.

    ``data="global"`` (default): every rank builds the same source (a cache, a stream or a
    tensor), reads the global batch and keeps its contiguous slice (``Trainer.shard``), which
    is what makes N ranks equal one process. ``data="local"``: each rank's source is already its
    own disjoint part (its cache shards, its slice of the tokens) and it draws
    ``batch_size / world`` rows from it per step; nothing is read twice, the initial b_dec and
    scale are rank 0's, and the checkpoint keeps every rank's source position.
    ``batch_size`` is the global batch and must be a multiple of the world size.
    """

    def __init__(
        self,
        cfgs: DictionaryConfig | list[DictionaryConfig],
        source: Any,
        tcfg: TrainConfig | None = None,
        names: list[str] | None = None,
        progress: bool = True,
        data: str = "global",
    ):
        if data not in DATA_MODES:
            raise ConfigError(f"data must be 'global' or 'local', got {data!r}.")
        self.data = data
        info = comm.dist_info()
        self.rank, self.world_size = info.rank, info.world_size
        tcfg = tcfg or TrainConfig()
        if tcfg.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size ({tcfg.batch_size}) must be a multiple of the number of ranks "
                f"({self.world_size}) for data-parallel training."
            )
        self.local_batch = tcfg.batch_size // self.world_size
        super().__init__(cfgs, source, tcfg, names=names, progress=progress)
        if self.rank != 0:
            self.metrics = MetricsLog(None)  # only rank 0 writes metrics.jsonl
        self._check_same_setup()
        self._broadcast_weights()

    # ------------------------------------------------------------------ start-up
    def _note(self) -> str:
        path = self.checkpoint_path()
        if path is not None and path.exists():
            return f"; the last checkpoint {path} is intact, restart every rank with --resume"
        return ""

    def _check_same_setup(self) -> None:
        """Every rank must train the same dictionaries with the same settings."""
        setup = self.describe()
        setup["train"] = {k: v for k, v in setup["train"].items() if k != "device"}  # cuda:0 vs cuda:1 is fine
        text = json.dumps(setup, sort_keys=True, default=str)
        digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
        mine = torch.tensor([digest], dtype=torch.long, device=self.device)
        lo, hi = mine.clone(), mine.clone()
        comm.all_reduce(lo, dist.ReduceOp.MIN, "the start-up config check")
        comm.all_reduce(hi, dist.ReduceOp.MAX, "the start-up config check")
        if int(lo) != int(hi):
            raise ConfigError(
                f"rank {self.rank} was started with different dictionary or training settings than "
                "another rank; launch every rank with the same command line."
            )

    @torch.no_grad()
    def _broadcast_weights(self) -> None:
        # Initialisation is seeded, so this is a no-op on CPU; on GPUs it removes any
        # nondeterminism of the init sample so every rank starts from rank 0's weights.
        for run in self.runs:
            for t in list(run.sae.parameters()) + list(run.sae.buffers()):
                comm.broadcast(t.data, 0, f"the initial weights of {run.name}")

    # ------------------------------------------------------------------ data
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.data == "global":
            return super().next_batch()
        if self._pending:  # the initialisation batch (full size): this rank trains on its first rows
            x, y = self._pending.pop(0)
            x, y = x[: self.local_batch], (y[: self.local_batch] if y is not None else None)
        else:
            x, y = self.source.next_batch(self.local_batch)
        return x.to(self.device, non_blocking=True), (y.to(self.device, non_blocking=True) if y is not None else None)

    def _on_bad_batch(self) -> None:
        # With local data only this rank saw the bad rows, so a checkpoint (a collective here)
        # cannot be taken; the last periodic one stays.
        if self.data == "global":
            super()._on_bad_batch()

    # ------------------------------------------------------------------ the DDP part
    def reduce_gradients(self, sae: SparseDictionary) -> None:
        params = list(sae.parameters())
        have = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self.device)
        comm.all_reduce(have, dist.ReduceOp.MAX, "the gradient all-reduce", note=self._note())
        works = []
        for p, h in zip(params, have.tolist()):
            if not h:
                continue
            if p.grad is None:  # another rank has a gradient here: contribute zeros
                p.grad = torch.zeros_like(p)
            try:
                works.append((p, dist.all_reduce(p.grad, async_op=True)))
            except Exception as e:  # a broken group can fail at submission, not only at wait
                raise comm.failure("the gradient all-reduce", e, self._note()) from None
        for p, w in works:
            comm.wait(w, "the gradient all-reduce", note=self._note())
            p.grad.div_(self.world_size)

    def reduce_fired(self, fired: torch.Tensor) -> torch.Tensor:
        t = fired.to(torch.int32)
        comm.all_reduce(t, dist.ReduceOp.MAX, "the dead-latent all-reduce", note=self._note())
        return t.bool()

    def gather_batch(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        xs = torch.cat(comm.all_gather(x, "the resampling all-gather", note=self._note()))
        ys = torch.cat(comm.all_gather(y, "the resampling all-gather", note=self._note())) if y is not None else None
        return xs, ys

    @torch.no_grad()
    def _record(self, run: Run, out, x, y, lr: float) -> dict[str, Any]:
        """Metrics of the global batch: means averaged, FVU from all-reduced sums."""
        rec = super()._record(run, out, x, y, lr)
        keys = ["loss", "l0"] + sorted(out.terms)
        ys = run.sae.scale_in(x if y is None else y).float()
        resid = (ys - out.y_hat.float()).pow(2).sum()
        head = torch.tensor([rec[k] for k in keys], dtype=torch.float64, device=self.device)
        sums = torch.stack([resid.double(), ys.double().pow(2).sum(), torch.tensor(float(ys.shape[0]), dtype=torch.float64, device=self.device)])
        vec = torch.cat([head, sums, ys.double().sum(0)])
        comm.all_reduce(vec, what="the metrics all-reduce", note=self._note())
        n_keys = len(keys)
        for i, k in enumerate(keys):
            rec[k] = float(vec[i]) / self.world_size
        resid_sum, sq_sum, n = (float(v) for v in vec[n_keys : n_keys + 3])
        var = sq_sum - float(vec[n_keys + 3 :].pow(2).sum()) / n
        rec["fvu"] = resid_sum / max(var, 1e-12)
        return rec

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "world_size": self.world_size, "data": self.data}

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        if self.data == "global":
            return super().save_checkpoint(path)
        # Every rank's source position goes into rank 0's file (a collective: all ranks call it).
        sources = comm.all_gather_object(self.source.state_dict(), "the checkpoint's source-state gather")
        path = Path(path) if path is not None else self.checkpoint_path()
        if path is None or self.rank != 0:
            return None
        return save_checkpoint(path, {**self.state_dict(), "sources": sources})

    def resume(self, path: str | Path | None = None) -> Trainer:
        """Rank 0 reads the checkpoint and broadcasts it, so ranks need no shared disk."""
        path = path if path is not None else self.checkpoint_path()
        if path is None:
            raise ConfigError("resume needs out_dir (where the checkpoint is) or a checkpoint path.")
        state: Any = None
        if self.rank == 0:
            try:
                state = load_checkpoint(path)
            except SaekitError as e:
                state = {"error": str(e)}
        state = comm.broadcast_object(state, 0, "the checkpoint broadcast")
        if "error" in state:
            raise DataError(state["error"])
        saved = state.get("world_size", 1)
        if saved != self.world_size:
            raise ConfigError(
                f"the checkpoint was written by {saved} rank(s) but this run has {self.world_size}; "
                f"resume with --nproc-per-node/--nnodes giving {saved} ranks."
            )
        if state.get("data", "global") != self.data:
            raise ConfigError(
                f"the checkpoint was written with data={state.get('data', 'global')!r} but this run has data={self.data!r}."
            )
        if self.data == "local":
            state = {**state, "source": state["sources"][self.rank]}
        self.load_state_dict(state)
        return self

    def fit(self) -> list[SparseDictionary]:
        saes = super().fit()
        # Return only once rank 0 has written the dictionaries, so every rank's "done" is true.
        comm.barrier("the end-of-training barrier")
        return saes


def data_part(data: str) -> tuple[int, int] | None:
    """(rank, world) when this process is one of several ranks reading local data, else None."""
    if data not in DATA_MODES:
        raise ConfigError(f"--dist-data must be 'global' or 'local', got {data!r}.")
    if data == "global" or not is_distributed_launch():
        return None
    import os

    return int(os.environ.get("RANK", "0")), comm.env_world_size()


def make_trainer(
    cfgs: DictionaryConfig | list[DictionaryConfig],
    source: Any,
    tcfg: TrainConfig | None = None,
    *,
    names: list[str] | None = None,
    progress: bool = True,
    timeout_s: float | None = None,
    data: str = "global",
    shard_latents: bool = False,
) -> Trainer:
    """When launched as one of several ranks: a ``DataParallelTrainer``, or with
    ``shard_latents`` a ``LatentShardedTrainer``; else a plain ``Trainer``."""
    if not is_distributed_launch():
        return Trainer(cfgs, source, tcfg, names=names, progress=progress)
    if shard_latents and data != "global":
        raise ConfigError("--shard-latents needs every rank to read the same batches; drop --dist-data local.")
    init_distributed(timeout_s, device=(tcfg.device if tcfg else "auto"))
    if shard_latents:
        return LatentShardedTrainer(cfgs, source, tcfg, names=names, progress=progress)
    return DataParallelTrainer(cfgs, source, tcfg, names=names, progress=progress, data=data)


def train_data_parallel(
    cfg: DictionaryConfig | list[DictionaryConfig],
    source: Any,
    tcfg: TrainConfig | None = None,
    *,
    resume: bool | str | Path = False,
    names: list[str] | None = None,
    progress: bool = True,
    timeout_s: float | None = None,
    data: str = "global",
) -> SparseDictionary | list[SparseDictionary]:
    """``saekit.train`` for a process started by torchrun: joins the group, trains data-parallel.

    Every rank calls it with the same arguments (with ``data="local"``, each with its own part
    of the activations); every rank gets the trained dictionaries.
    """
    trainer = make_trainer(cfg, source, tcfg, names=names, progress=progress, timeout_s=timeout_s, data=data)
    if resume:
        trainer.resume(None if resume is True else resume)
    saes = trainer.fit()
    return saes[0] if isinstance(cfg, DictionaryConfig) else saes

