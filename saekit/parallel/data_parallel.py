"""Data parallelism as a Trainer strategy (``DataParallel``), and the entry points that pick a
strategy for a process started by torchrun (``make_trainer``, ``train_data_parallel``).

Every rank holds every dictionary and trains on its 1/N of each global batch; gradients are
all-reduced (averaged) before clipping and Adam, as DDP does; dead-latent "fired" masks are
OR-ed and logged metrics are reduced to global-batch values, so N ranks follow the same
trajectory as one process with the same global batch. Only rank 0 writes checkpoints,
metrics and dictionaries; on resume rank 0 reads the checkpoint and broadcasts it (no shared
file system needed). Every collective gives up after the group timeout with one sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from saekit.config import DictionaryConfig, TrainConfig
from saekit.dictionaries import SparseDictionary
from saekit.errors import ConfigError, DataError, SaekitError
from saekit.parallel import comm
from saekit.training.checkpoint import load_checkpoint
from saekit.training.loop import Trainer
from saekit.training.strategy import Batch, Solo

DATA_MODES = ("global", "local")


class DataParallel(Solo):
    """DDP-style data parallelism over the ranks of the default group.

    ``data="global"`` (default): every rank builds the same source (a cache, a stream or a
    tensor), reads the global batch and keeps its contiguous slice, which is what makes N ranks
    equal one process. ``data="local"``: each rank's source is already its own disjoint part
    (its slice of the rows or of the tokens) and it draws ``batch_size / world`` rows from it
    per step; nothing is read twice, the initial b_dec and scale are rank 0's, and the
    checkpoint keeps every rank's source position. ``batch_size`` is the global batch and must
    be a multiple of the world size.
    """

    def __init__(self, data: str = "global"):
        super().__init__()
        if data not in DATA_MODES:
            raise ConfigError(f"data must be 'global' or 'local', got {data!r}.")
        self.data = data
        info = comm.dist_info()
        self.rank, self.world_size = info.rank, info.world_size
        self.writes = self.rank == 0
        self.checkpoint_on_bad_data = data == "global"  # with local data only this rank saw them

    def bind(self, out_dir: Path | None, tcfg: TrainConfig) -> None:
        super().bind(out_dir, tcfg)
        if tcfg.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size ({tcfg.batch_size}) must be a multiple of the number of ranks "
                f"({self.world_size}) for data-parallel training."
            )
        self.local_batch = tcfg.batch_size // self.world_size

    def note(self) -> str:
        path = self.checkpoint_path()
        if path is not None and path.exists():
            return f"; the last checkpoint {path} is intact, restart every rank with --resume"
        return ""

    # ------------------------------------------------------------------ start-up
    def after_init(self, setup: dict[str, Any], saes: dict[str, SparseDictionary]) -> None:
        self._check_same_setup(setup)
        self._broadcast_weights(saes)

    def _check_same_setup(self, setup: dict[str, Any]) -> None:
        """Every rank must train the same dictionaries with the same settings."""
        setup = dict(setup)
        setup["train"] = {k: v for k, v in setup["train"].items() if k != "device"}  # cuda:0 vs cuda:1 is fine
        text = json.dumps(setup, sort_keys=True, default=str)
        digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
        mine = torch.tensor([digest], dtype=torch.long, device=comm.comm_device())
        lo, hi = mine.clone(), mine.clone()
        comm.all_reduce(lo, dist.ReduceOp.MIN, "the start-up config check")
        comm.all_reduce(hi, dist.ReduceOp.MAX, "the start-up config check")
        if int(lo) != int(hi):
            raise ConfigError(
                f"rank {self.rank} was started with different dictionary or training settings than "
                "another rank; launch every rank with the same command line."
            )

    @torch.no_grad()
    def _broadcast_weights(self, saes: dict[str, SparseDictionary]) -> None:
        # Initialisation is seeded, so this is a no-op on CPU; on GPUs it removes any
        # nondeterminism of the init sample so every rank starts from rank 0's weights.
        for name, sae in saes.items():
            for t in list(sae.parameters()) + list(sae.buffers()):
                comm.broadcast(t.data, 0, f"the initial weights of {name}")

    # ------------------------------------------------------------------ data
    def read_batch(self, source: Any, batch_size: int, pending: list[Batch]) -> Batch:
        if self.data == "global":
            x, y = super().read_batch(source, batch_size, pending)
            return x.tensor_split(self.world_size)[self.rank], (
                y.tensor_split(self.world_size)[self.rank] if y is not None else None
            )
        if pending:  # the initialisation batch (full size): this rank trains on its first rows
            x, y = pending.pop(0)
            return x[: self.local_batch], (y[: self.local_batch] if y is not None else None)
        return source.next_batch(self.local_batch)

    def global_rows(self, n_local: int) -> int:
        return n_local * self.world_size

    def agree(self, value: float) -> float:
        """The mean over the ranks (each may have measured its own rows)."""
        return comm.mean_over_ranks(value, "the data-spread average")

    # ------------------------------------------------------------------ the DDP part
    def reduce_gradients(self, sae: SparseDictionary) -> None:
        params = list(sae.parameters())
        have = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=comm.comm_device())
        comm.all_reduce(have, dist.ReduceOp.MAX, "the gradient all-reduce", note=self.note())
        works = []
        for p, h in zip(params, have.tolist()):
            if not h:
                continue
            if p.grad is None:  # another rank has a gradient here: contribute zeros
                p.grad = torch.zeros_like(p)
            try:
                works.append((p, dist.all_reduce(p.grad, async_op=True)))
            except Exception as e:  # a broken group can fail at submission, not only at wait
                raise comm.failure("the gradient all-reduce", e, self.note()) from None
        for p, w in works:
            comm.wait(w, "the gradient all-reduce", note=self.note())
            p.grad.div_(self.world_size)

    def reduce_fired(self, fired: torch.Tensor) -> torch.Tensor:
        t = fired.to(torch.int32)
        comm.all_reduce(t, dist.ReduceOp.MAX, "the dead-latent all-reduce", note=self.note())
        return t.bool()

    def gather_batch(self, x: torch.Tensor, y: torch.Tensor | None) -> Batch:
        xs = torch.cat(comm.all_gather(x, "the resampling all-gather", note=self.note()))
        ys = torch.cat(comm.all_gather(y, "the resampling all-gather", note=self.note())) if y is not None else None
        return xs, ys

    @torch.no_grad()
    def reduce_record(self, rec: dict[str, Any], run: Any, out: Any, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        """Metrics of the global batch: means averaged, FVU from all-reduced sums."""
        keys = ["loss", "l0"] + sorted(out.terms)
        ys = run.sae.scale_in(x if y is None else y).float()
        resid = (ys - out.y_hat.float()).pow(2).sum()
        dev = ys.device
        head = torch.tensor([rec[k] for k in keys], dtype=torch.float64, device=dev)
        n_rows = torch.tensor(float(ys.shape[0]), dtype=torch.float64, device=dev)
        sums = torch.stack([resid.double(), ys.double().pow(2).sum(), n_rows])
        vec = torch.cat([head, sums, ys.double().sum(0)])
        comm.all_reduce(vec, what="the metrics all-reduce", note=self.note())
        n_keys = len(keys)
        for i, k in enumerate(keys):
            rec[k] = float(vec[i]) / self.world_size
        resid_sum, sq_sum, n = (float(v) for v in vec[n_keys : n_keys + 3])
        var = sq_sum - float(vec[n_keys + 3 :].pow(2).sum()) / n
        rec["fvu"] = resid_sum / max(var, 1e-12)
        return rec

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, make_state: Callable[[], dict[str, Any]], source: Any) -> dict[str, Any] | None:
        # With local data every rank's source position goes into rank 0's file (a collective).
        sources = None
        if self.data == "local":
            sources = comm.all_gather_object(source.state_dict(), "the checkpoint's source-state gather")
        if not self.writes:
            return None
        state = {**make_state(), "world_size": self.world_size, "data": self.data}
        return state if sources is None else {**state, "sources": sources}

    def load_state(self, path: str | Path) -> dict[str, Any]:
        """Rank 0 reads the checkpoint and broadcasts it, so ranks need no shared disk."""
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
        return state

    def finish(self) -> None:
        # Return only once rank 0 has written the dictionaries, so every rank's "done" is true.
        comm.barrier("the end-of-training barrier")


class DataParallelTrainer(Trainer):
    """The ordinary ``Trainer`` with the ``DataParallel`` strategy (call ``init_distributed`` first)."""

    def __init__(
        self,
        cfgs: DictionaryConfig | list[DictionaryConfig],
        source: Any,
        tcfg: TrainConfig | None = None,
        names: list[str] | None = None,
        progress: bool = True,
        data: str = "global",
    ):
        super().__init__(cfgs, source, tcfg, names=names, progress=progress, strategy=DataParallel(data))


def data_part(data: str) -> tuple[int, int] | None:
    """(rank, world) when this process is one of several ranks reading local data, else None."""
    if data not in DATA_MODES:
        raise ConfigError(f"--dist-data must be 'global' or 'local', got {data!r}.")
    if data == "global" or not comm.is_distributed_launch():
        return None
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
    """A ``Trainer`` whose strategy fits how this process was started: one of several ranks
    (torchrun) gets ``DataParallel``, or with ``shard_latents`` ``LatentSharded``; else ``Solo``."""
    if not comm.is_distributed_launch():
        return Trainer(cfgs, source, tcfg, names=names, progress=progress)
    if shard_latents and data != "global":
        raise ConfigError("--shard-latents needs every rank to read the same batches; drop --dist-data local.")
    comm.init_distributed(timeout_s, device=(tcfg.device if tcfg else "auto"))
    if shard_latents:
        from saekit.parallel.latent_sharded import LatentSharded

        # The dictionary is too wide for one device: only the writing rank assembles it (on CPU).
        strategy: Solo = LatentSharded(full_on="writer")
    else:
        strategy = DataParallel(data)
    return Trainer(cfgs, source, tcfg, names=names, progress=progress, strategy=strategy)


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
