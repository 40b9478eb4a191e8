"""Distributed hookpoints: dictionaries for different hookpoints on different ranks, with the
activations produced once (on rank 0) and sent to the rank that trains on them.

This is sparsify's ``--distribute_modules`` idea without its hangs: every send and receive
waits at most the group timeout and then fails with one sentence (``DistributedError``).

    # every rank runs the same script under torchrun
    jobs = [HookpointJob("blocks.0.hook_resid_post", cfg0), HookpointJob("blocks.1.hook_resid_post", cfg1)]
    producer = LiveHookSource(model, tokens, [j.hookpoint for j in jobs], seed=0) if rank == 0 else None
    saes = train_hookpoints(jobs, producer, tcfg, out_dir="runs/layers")

Job i is trained by rank ``i % world`` (or ``placement[i]``). Each step rank 0 draws one batch
of every hookpoint from the producer (one model forward for all of them), keeps its own jobs'
parts and sends the others' (non-blocking, so it trains while they travel); each owner trains
its dictionaries with the ordinary ``Trainer`` (its ``begin``/``advance``/``finish``, the pieces
of ``fit``) on exactly the rows a single-process run on that hookpoint would see. Owners write their jobs' folders (``out_dir/<job name>/``: the
dictionary, checkpoint, metrics.jsonl); rank 0 also writes the producer's read position at
every checkpoint, so a run resumes exactly with the same world size.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from saekit.config import DictionaryConfig, TrainConfig
from saekit.dictionaries import SparseDictionary
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_torch_save, load_torch_file
from saekit.parallel import comm
from saekit.progress import token_bar
from saekit.training.loop import INIT_SAMPLE, Trainer
from saekit.training.sources import BatchSource, TensorSource

PRODUCER_STATE = "producer_state.pt"


class HookpointProducer(Protocol):
    """Rows of several hookpoints at the same tokens: ``{hookpoint: Tensor [B, d]}``."""

    widths: dict[str, int]  # hookpoint -> d

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]: ...
    def sample(self, n: int) -> dict[str, torch.Tensor] | None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class HookpointJob:
    """Dictionaries (one, or a sweep) trained on one hookpoint, or an (input, output) pair
    of hookpoints for transcoders."""

    hookpoint: str | tuple[str, str]
    cfgs: DictionaryConfig | list[DictionaryConfig]
    name: str | None = None
    _cfgs: list[DictionaryConfig] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cfgs = [self.cfgs] if isinstance(self.cfgs, DictionaryConfig) else list(self.cfgs)
        if not self._cfgs:
            raise ConfigError(f"hookpoint job {self.hookpoint!r} has no DictionaryConfig.")
        if isinstance(self.hookpoint, (list, tuple)):
            self.hookpoint = (str(self.hookpoint[0]), str(self.hookpoint[1]))
        if self.name is None:
            hp = self.hookpoint if isinstance(self.hookpoint, str) else "__".join(self.hookpoint)
            self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", hp)
        widths = {(c.d_in, c.d_out) for c in self._cfgs}
        if len(widths) != 1:
            raise ConfigError(f"the dictionaries of hookpoint job {self.name} need the same d_in and d_out.")

    @property
    def paired(self) -> bool:
        return not isinstance(self.hookpoint, str)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hookpoint,) if isinstance(self.hookpoint, str) else tuple(self.hookpoint)

    @property
    def widths(self) -> tuple[int, ...]:
        c = self._cfgs[0]
        return (c.d_in,) if not self.paired else (c.d_in, c.d_out)


class TensorHookSource:
    """In-memory activations of several hookpoints at the same N tokens, in the seeded order
    ``TensorSource`` uses, so hookpoint h's rows equal ``TensorSource(tensors[h], seed)``'s."""

    def __init__(self, tensors: dict[str, torch.Tensor], seed: int = 0):
        if not tensors:
            raise DataError("TensorHookSource needs at least one hookpoint tensor.")
        sizes = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(f"hookpoint tensors must have the same number of rows (tokens), got {sizes}.")
        self.tensors = tensors
        self.widths = {k: int(v.shape[1]) for k, v in tensors.items()}
        n = next(iter(sizes.values()))
        self._rows = TensorSource(torch.arange(n).unsqueeze(1), seed=seed)  # the order, not the data

    def _take(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[idx] for k, v in self.tensors.items()}

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        return self._take(self._rows.next_batch(batch_size)[0][:, 0])

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        return self._take(self._rows.sample(n)[0][:, 0])

    def state_dict(self) -> dict:
        return self._rows.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._rows.load_state_dict(state)


class LiveHookSource:
    """Activations of several hookpoints from one model forward per group of sequences.

    ``tokens`` [n_seq, n_ctx]; sequences are visited in a seeded order (a new one each pass),
    ``batch_seqs`` at a time; the rows of each forward (BOS positions dropped) are shuffled and
    served in order. The state (pass, next sequence, rows not yet served) resumes exactly.
    """

    def __init__(self, model: Any, tokens: torch.Tensor, hookpoints: list[str], *, seed: int = 0, batch_seqs: int = 8):
        from saekit.activations.hookpoints import HookpointReader, bos_token_id, keep_mask

        self.reader = HookpointReader(model, list(dict.fromkeys(hookpoints)))
        self.tokens = torch.as_tensor(tokens)
        if self.tokens.dim() != 2:
            raise ConfigError(f"tokens must be a tensor [n_seq, n_ctx], got shape {tuple(self.tokens.shape)}.")
        self.keep = keep_mask(self.tokens, drop_bos=True, bos_id=bos_token_id(self.reader.info.tokenizer))
        self.seed, self.batch_seqs = int(seed), int(batch_seqs)
        self.passes, self.next_seq = 0, 0
        self._left: dict[str, torch.Tensor] = {}
        probe = self.reader(self.tokens[:1].to(self.reader.device))  # widths; moves no state
        self.widths = {hp: int(a.shape[-1]) for hp, a in probe.items()}

    def _order(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.passes) % 2**63)  # seeds may be 63-bit hashes
        return torch.randperm(self.tokens.shape[0], generator=gen)

    def _forward(self) -> dict[str, torch.Tensor]:
        seqs = self._order()[self.next_seq : self.next_seq + self.batch_seqs]
        self.next_seq += seqs.numel()
        if self.next_seq >= self.tokens.shape[0]:
            self.passes, self.next_seq = self.passes + 1, 0
        acts = self.reader(self.tokens[seqs].to(self.reader.device))
        keep = self.keep[seqs]
        rows = {hp: a[keep.to(a.device)].float().cpu() for hp, a in acts.items()}
        gen = torch.Generator().manual_seed((self.seed + 31 * (self.passes * self.tokens.shape[0] + self.next_seq)) % 2**63)
        perm = torch.randperm(int(keep.sum()), generator=gen)
        return {hp: r[perm] for hp, r in rows.items()}

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        have = next(iter(self._left.values())).shape[0] if self._left else 0
        parts = [self._left] if have else []
        while have < batch_size:
            got = self._forward()
            parts.append(got)
            have += next(iter(got.values())).shape[0]
        full = {hp: torch.cat([p[hp] for p in parts]) for hp in self.reader.hookpoints}
        self._left = {hp: v[batch_size:] for hp, v in full.items()}
        return {hp: v[:batch_size] for hp, v in full.items()}

    def sample(self, n: int) -> dict[str, torch.Tensor] | None:
        return None  # a sample would move the reader; the trainers initialise from batch 1

    def state_dict(self) -> dict:
        return {"passes": self.passes, "next_seq": self.next_seq, "left": {k: v.clone() for k, v in self._left.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.passes, self.next_seq, self._left = state["passes"], state["next_seq"], dict(state["left"])


class HookpointSource(BatchSource):
    """One job's rows of a producer as an ordinary trainer source (single process: the
    reference a distributed run must equal, or one job without distribution)."""

    def __init__(self, producer: HookpointProducer, hookpoint: str | tuple[str, str]):
        self.producer = producer
        self.keys = (hookpoint,) if isinstance(hookpoint, str) else tuple(hookpoint)
        missing = [k for k in self.keys if k not in producer.widths]
        if missing:
            raise ConfigError(f"the producer does not read hookpoint(s) {missing}; it reads {sorted(producer.widths)}.")
        self.d_in = int(producer.widths[self.keys[0]])
        self.d_out = int(producer.widths[self.keys[-1]])
        self.paired = len(self.keys) == 2

    def _pick(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return batch[self.keys[0]].float(), (batch[self.keys[1]].float() if self.paired else None)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._pick(self.producer.next_batch(batch_size))

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        got = self.producer.sample(n)
        return None if got is None else self._pick(got)

    def state_dict(self) -> dict:
        return self.producer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.producer.load_state_dict(state)


class QueueSource(BatchSource):
    """The owner rank's view of one job: batches arrive from the exchange, in order."""

    def __init__(self, job: HookpointJob):
        self.d_in = job.widths[0]
        self.d_out = job.widths[-1]
        self.paired = job.paired
        self.queue: deque[tuple[torch.Tensor, torch.Tensor | None]] = deque()
        self.init_sample: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.queue:
            raise DataError("the hookpoint exchange delivered no batch for this step (internal order error).")
        x, y = self.queue.popleft()
        if x.shape[0] != batch_size:
            raise DataError(f"the hookpoint exchange delivered {x.shape[0]} rows, expected {batch_size}.")
        return x, y

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        return self.init_sample


class _Exchange:
    """Rank 0 produces every job's rows and sends each to its owner; owners receive theirs."""

    def __init__(self, jobs: list[HookpointJob], owners: list[int], producer: HookpointProducer | None, rank: int):
        self.jobs, self.owners, self.producer, self.rank = jobs, owners, producer, rank
        self.sources = {i: QueueSource(j) for i, j in enumerate(jobs) if owners[i] == rank}
        self._in_flight: list[tuple[Any, torch.Tensor]] = []

    def _parts(self, job: HookpointJob, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        missing = [k for k in job.keys if k not in batch]
        if missing:
            raise DataError(f"the hookpoint producer yields {sorted(batch)} but job {job.name} needs {missing}.")
        dev = comm.comm_device()
        return [batch[k].to(dev, torch.float32).contiguous() for k in job.keys]

    def _settle(self) -> None:
        for work, _tensor in self._in_flight:  # the tensor is kept alive until its send completes
            comm.wait(work, "sending activations to their owner rank")
        self._in_flight = []

    def exchange(self, batch_size: int, what: str, use_sample: bool = False) -> bool:
        """One round; for the init sample, returns whether rank 0 had one to give."""
        if self.rank == 0:
            self._settle()
            batch = self.producer.sample(INIT_SAMPLE) if use_sample else self.producer.next_batch(batch_size)
            n = torch.tensor([-1 if batch is None else next(iter(batch.values())).shape[0]], dtype=torch.long)
        else:
            n = torch.zeros(1, dtype=torch.long)
        dev = comm.comm_device()  # NCCL moves CUDA tensors only
        n = n.to(dev)
        if use_sample:
            comm.broadcast(n, 0, "the hookpoint sample size broadcast")
            if int(n) < 0:
                return False
        rows = int(n) if use_sample else batch_size
        for i, job in enumerate(self.jobs):
            owner = self.owners[i]
            if self.rank == 0:
                parts = self._parts(job, batch)
                if any(p.shape[0] != rows for p in parts):
                    raise DataError(f"the hookpoint producer gave {parts[0].shape[0]} rows, expected {rows}.")
                if owner != 0:
                    for p in parts:
                        try:
                            work = dist.isend(p, dst=owner)
                        except Exception as e:
                            raise comm.failure(f"sending {job.name} activations to rank {owner}", e) from None
                        self._in_flight.append((work, p))
                    continue
            elif owner != self.rank:
                continue
            if owner == self.rank and self.rank != 0:
                parts = [
                    comm.recv(torch.empty(rows, w, device=dev), 0, f"receiving {job.name} activations ({what}) from rank 0")
                    for w in job.widths
                ]
            item = (parts[0], parts[1] if job.paired else None)
            src = self.sources[i]
            if use_sample:
                src.init_sample = item
            else:
                src.queue.append(item)
        return True

    def close(self) -> None:
        if self.rank == 0:
            self._settle()


def _placement(n_jobs: int, world: int, placement: list[int] | None) -> list[int]:
    if placement is None:
        return [i % world for i in range(n_jobs)]
    if len(placement) != n_jobs or any(not (0 <= int(r) < world) for r in placement):
        raise ConfigError(f"placement must give a rank in 0..{world - 1} for each of the {n_jobs} jobs, got {placement}.")
    return [int(r) for r in placement]


def train_hookpoints(
    jobs: list[HookpointJob],
    producer: HookpointProducer | None,
    tcfg: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    placement: list[int] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, list[SparseDictionary]]:
    """Train every job's dictionaries on its owner rank; returns this rank's jobs by name.

    Call it on every rank of an initialised group (``init_distributed``) with the same jobs and
    ``tcfg``; ``producer`` is needed on rank 0 only. Without a process group it trains every
    job in this process (one forward for all hookpoints). ``tcfg.out_dir`` is ignored: each job
    writes under ``out_dir/<job name>/``.
    """
    rank, world = comm.rank_and_world()
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ConfigError(f"hookpoint job names must be unique, got {names}.")
    if rank == 0 and producer is None:
        raise ConfigError("rank 0 produces the activations: pass a producer (TensorHookSource, LiveHookSource).")
    owners = _placement(len(jobs), world, placement)
    out = Path(out_dir) if out_dir is not None else None
    ex = _Exchange(jobs, owners, producer, rank)
    steps = tcfg.steps
    # Initialisation rows: a sample when the producer has one, else the first batch (which the
    # trainers then also train on, as a single-process Trainer does). On resume the trainers'
    # and the producer's states are then overwritten by the checkpoints.
    if resume and out is None:
        raise ConfigError("resume needs out_dir (where the job checkpoints are).")
    started = 0
    if not ex.exchange(tcfg.batch_size, "the initialisation sample", use_sample=True):
        ex.exchange(tcfg.batch_size, "the first batch")
        started = 1
    trainers: dict[int, Trainer] = {}
    for i, src in ex.sources.items():
        jcfg = tcfg.replace(out_dir=str(out / jobs[i].name) if out is not None else None)
        trainers[i] = Trainer(jobs[i]._cfgs, src, jcfg, progress=False)
    if resume:
        started = _resume(trainers, ex, out, rank)
    for i, t in trainers.items():
        t.begin(note={"hookpoint": jobs[i].hookpoint})
    first = started if resume else 0
    bar = token_bar(steps * tcfg.batch_size * len(jobs), desc=f"rank {rank}: {len(jobs)} hookpoints", disable=None if progress and rank == 0 else True)
    bar.update(first * tcfg.batch_size * len(jobs))
    every = tcfg.checkpoint_every
    step = first
    try:
        while step < steps:
            if step >= started:
                ex.exchange(tcfg.batch_size, f"step {step}")
            for t in trainers.values():
                t.advance()
            step += 1
            bar.update(tcfg.batch_size * len(jobs))
            if every and step % every == 0 and step < steps and out is not None:
                _checkpoint(trainers, ex, out, rank, step)
        ex.close()
    finally:
        bar.close()
        for t in trainers.values():
            t.close()
    if out is not None:
        _checkpoint(trainers, ex, out, rank, step)
    result = {jobs[i].name: t.finish() for i, t in trainers.items()}
    comm.barrier("the end-of-training barrier")
    return result


def _checkpoint(trainers: dict[int, Trainer], ex: _Exchange, out: Path, rank: int, step: int) -> None:
    for t in trainers.values():
        t.save_checkpoint()
    if rank == 0:
        atomic_torch_save(out / PRODUCER_STATE, {"step": step, "producer": ex.producer.state_dict()})


def _resume(trainers: dict[int, Trainer], ex: _Exchange, out: Path, rank: int) -> int:
    """Restore every job and rank 0's producer; all must be at the same step (else one rank
    died between writing its checkpoint and the others writing theirs)."""
    steps = []
    for t in trainers.values():
        t.resume()
        steps.append(t.step_count)
    if rank == 0:
        path = out / PRODUCER_STATE
        if not path.is_file():
            raise DataError(f"{path} does not exist; nothing to resume (train without resume first).")
        state = load_torch_file(path, "producer state")  # weights_only: never unpickles code
        ex.producer.load_state_dict(state["producer"])
        steps.append(int(state["step"]))
    big = 1 << 40
    lo = torch.tensor([min(steps, default=big)], dtype=torch.long, device=comm.comm_device())
    hi = torch.tensor([max(steps, default=-1)], dtype=torch.long, device=comm.comm_device())
    comm.all_reduce(lo, dist.ReduceOp.MIN, "the resume step check")
    comm.all_reduce(hi, dist.ReduceOp.MAX, "the resume step check")
    if int(lo) != int(hi):
        raise DataError(
            f"the checkpoints under {out} are of different steps ({int(lo)} to {int(hi)}): a rank died "
            "while they were being written; restart without resume."
        )
    return int(hi)
