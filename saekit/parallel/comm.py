"""torch.distributed plumbing: joining the process group from torchrun's environment, and
collectives that give up after a timeout with one clear sentence instead of hanging.

torchrun (or any launcher) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
``init_distributed`` reads them, picks NCCL when the run is on CUDA and gloo otherwise, and
joins with ``timeout_s`` (the same limit then applies to every collective of the group).
Without a joined group this process is the whole world: the collectives below are identities
(an all-reduce over one rank returns its input), so code written for N ranks runs as one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from saekit.errors import ConfigError, SaekitError

DEFAULT_TIMEOUT_S = 600.0  # 10 min: room for a slow first batch (model load, cache open)
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(SaekitError):
    """A collective failed: another rank died, hung past the timeout, or the group broke."""


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    backend: str
    timeout_s: float


_STATE: dict[str, DistInfo] = {}


def env_world_size() -> int:
    """WORLD_SIZE from the launcher's environment (1 when not launched by torchrun)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE must be an integer, got {value!r}.") from None


def is_distributed_launch() -> bool:
    """True when a launcher started this process as one of several ranks."""
    return env_world_size() > 1


def init_distributed(
    timeout_s: float | None = None, backend: str | None = None, device: str = "auto"
) -> DistInfo:
    """Join the process group described by the environment (idempotent).

    ``backend`` None picks NCCL when ``device`` resolves to CUDA, gloo otherwise. With NCCL each
    rank uses ``cuda:LOCAL_RANK`` (so ``device="cuda"``/``"auto"`` means the rank's own GPU).
    """
    if "info" in _STATE and dist.is_initialized():
        return _STATE["info"]
    timeout_s = float(timeout_s if timeout_s is not None else DEFAULT_TIMEOUT_S)
    if timeout_s <= 0:
        raise ConfigError(f"dist timeout must be a positive number of seconds, got {timeout_s}.")
    missing = [v for v in ENV_VARS if v not in os.environ and v != "LOCAL_RANK"]
    if missing:
        raise ConfigError(
            f"distributed training needs the environment variables {', '.join(missing)} "
            "(launch with torchrun --nproc-per-node N -m saekit ...)."
        )
    rank, world = int(os.environ["RANK"]), env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and device not in ("cpu",) and not str(device).startswith("cpu")
    backend = backend or ("nccl" if use_cuda else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
        )
    except Exception as e:  # rendezvous failure: the store could not be reached or a rank never came
        raise DistributedError(
            f"rank {rank} could not join the {world}-rank process group at "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} within {timeout_s:g} s "
            f"({_short(e)}); check that every rank was started with the same rendezvous settings."
        ) from None
    info = DistInfo(rank, world, local_rank, backend, timeout_s)
    _STATE["info"] = info
    _STATE["joined"] = True
    return info


def dist_info() -> DistInfo:
    """The group this process joined (``init_distributed`` first)."""
    if "info" not in _STATE or not dist.is_initialized():
        raise ConfigError("torch.distributed is not initialised; call saekit.parallel.init_distributed().")
    return _STATE["info"]


def solo() -> bool:
    """No process group joined: this process is a world of one."""
    return not dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the joined group, or (0, 1) without one."""
    if solo():
        return 0, 1
    info = dist_info()
    return info.rank, info.world_size


def comm_device() -> torch.device:
    """Where tensors for a collective must live: this rank's GPU under NCCL, else the CPU."""
    if solo():
        return torch.device("cpu")
    info = dist_info()
    return torch.device("cuda", torch.cuda.current_device()) if info.backend == "nccl" else torch.device("cpu")


def shutdown() -> None:
    """Leave the process group (only after a clean finish: a broken group cannot be torn down)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    _STATE.pop("info", None)


def joined_group() -> bool:
    """Whether this process ever joined a process group (see exit_process)."""
    return bool(_STATE.get("joined"))


def exit_process(code: int) -> None:
    """End a process that joined a process group, without C++ teardown at interpreter exit.

    gloo's worker threads can still be joinable when the interpreter exits (always after a
    failed collective, sometimes after a clean destroy_process_group); their destructors then
    call std::terminate ("terminate called without an active exception", SIGABRT), turning a
    finished run or a clean error exit (2) into a crash. Flush and leave with os._exit instead.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "…") if len(text) > 200 else (text or type(e).__name__)


def failure(what: str, e: BaseException | None, note: str = "") -> DistributedError:
    """The one-sentence error every failed collective raises."""
    info = _STATE.get("info")
    who = f"rank {info.rank} of {info.world_size}" if info else "this rank"
    limit = f" within {info.timeout_s:g} s" if info else ""
    cause = f" ({_short(e)})" if e is not None else ""
    return DistributedError(
        f"{who} could not complete {what}{limit}: another rank died, hung or lost its connection{cause}"
        f"{note}."
    )


def wait(work, what: str, note: str = "") -> None:
    """Wait for an async collective with the group's timeout; raise DistributedError on failure."""
    info = _STATE.get("info")
    try:
        if info is not None and info.backend == "gloo":
            work.wait(timeout=timedelta(seconds=info.timeout_s))
        else:  # NCCL: the group's watchdog enforces the timeout
            work.wait()
    except Exception as e:
        raise failure(what, e, note) from None


def all_reduce(t: torch.Tensor, op=dist.ReduceOp.SUM, what: str = "an all-reduce", group=None, note: str = "") -> torch.Tensor:
    """In-place all-reduce of ``t`` with the timeout; returns ``t``."""
    if solo():
        return t
    try:
        work = dist.all_reduce(t, op=op, group=group, async_op=True)
    except Exception as e:
        raise failure(what, e, note) from None
    wait(work, what, note)
    return t


def mean_over_ranks(value: float, what: str = "an average over the ranks") -> float:
    """The mean of each rank's ``value`` (the value itself without a process group)."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=comm_device())
    return float(all_reduce(t, what=what)) / rank_and_world()[1]


def all_gather(t: torch.Tensor, what: str = "an all-gather", group=None, note: str = "") -> list[torch.Tensor]:
    """All ranks' copies of ``t`` (same shape everywhere), in rank order."""
    if solo():
        return [t]
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    try:
        work = dist.all_gather(out, t.contiguous(), group=group, async_op=True)
    except Exception as e:
        raise failure(what, e, note) from None
    wait(work, what, note)
    return out


def broadcast(t: torch.Tensor, src: int = 0, what: str = "a broadcast", group=None, note: str = "") -> torch.Tensor:
    if solo():
        return t
    try:
        work = dist.broadcast(t, src=src, group=group, async_op=True)
    except Exception as e:
        raise failure(what, e, note) from None
    wait(work, what, note)
    return t


def send(t: torch.Tensor, dst: int, what: str = "a send", note: str = "") -> None:
    try:
        work = dist.isend(t.contiguous(), dst=dst)
    except Exception as e:
        raise failure(what, e, note) from None
    wait(work, what, note)


def recv(t: torch.Tensor, src: int, what: str = "a receive", note: str = "") -> torch.Tensor:
    try:
        work = dist.irecv(t, src=src)
    except Exception as e:
        raise failure(what, e, note) from None
    wait(work, what, note)
    return t


def barrier(what: str = "the final barrier", note: str = "") -> None:
    """A barrier with the timeout (an all-reduce of one number: works on gloo and NCCL)."""
    if solo():
        return
    all_reduce(torch.zeros(1, device=comm_device()), what=what, note=note)


def broadcast_object(obj, src: int = 0, what: str = "a broadcast", note: str = ""):
    """``obj`` from rank ``src`` on every rank (torch.save bytes: its size first, then the bytes)."""
    import io

    if solo():
        return obj
    info = dist_info()
    dev = comm_device()
    if info.rank == src:
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        size = torch.tensor([data.numel()], dtype=torch.long, device=dev)
    else:
        size = torch.zeros(1, dtype=torch.long, device=dev)
    broadcast(size, src, what, note=note)
    if info.rank != src:
        data = torch.empty(int(size[0]), dtype=torch.uint8)
    payload = broadcast(data.to(dev), src, what, note=note).cpu()
    if info.rank == src:
        return obj
    return torch.load(io.BytesIO(payload.numpy().tobytes()), map_location="cpu", weights_only=False)


def all_gather_object(obj, what: str = "an all-gather", note: str = "") -> list:
    """Every rank's ``obj`` (torch.save bytes, padded to the longest), in rank order."""
    import io

    if solo():
        return [obj]
    dev = comm_device()
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    sizes = all_gather(torch.tensor([data.numel()], dtype=torch.long, device=dev), what, note=note)
    width = int(max(int(s) for s in sizes))
    padded = torch.zeros(width, dtype=torch.uint8)
    padded[: data.numel()] = data
    parts = all_gather(padded.to(dev), what, note=note)
    return [
        torch.load(io.BytesIO(p.cpu()[: int(s)].numpy().tobytes()), map_location="cpu", weights_only=False)
        for p, s in zip(parts, sizes)
    ]
