"""Distributed hookpoints on 2 real gloo processes with a real transformer-lens model: rank 0
runs the model once per batch for every hookpoint and sends rows to the owner; each
dictionary (two SAEs on different layers and a transcoder) equals the one a single process
trains alone on its hookpoint, and owners wrote their own folders. Then a resume from the
mid-run checkpoints (a run stopped after step 5) lands on the same weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from saekit.config import DictionaryConfig, TrainConfig

D = 32
JOBS = [
    ("blocks.0.hook_resid_post", DictionaryConfig(kind="topk", d_in=D, n_latents=64, k=4)),
    ("blocks.1.hook_resid_post", DictionaryConfig(kind="relu", d_in=D, n_latents=48, sparsity_coef=1.0)),
    (("blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"), DictionaryConfig(kind="topk", d_in=D, d_out=D, transcoder=True, n_latents=40, k=3)),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_and_tokens():
    # Imported here so the spawned ranks of the failure test skip transformer-lens.
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=D, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=128, act_fn="gelu",
        normalization_type="LN", seed=0,
    )
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(1, 128, (48, 16), generator=torch.Generator().manual_seed(5))
    tokens[:, 0] = 0
    return model, tokens


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from saekit.parallel.comm import exit_process, init_distributed, shutdown
    from saekit.parallel.hookpoints import HookpointJob, HookpointSource, LiveHookSource, train_hookpoints
    from saekit.training import Trainer

    init_distributed(timeout_s=60, backend="gloo")
    model, tokens = _model_and_tokens()
    hps = list(dict.fromkeys(k for hp, _ in JOBS for k in ((hp,) if isinstance(hp, str) else hp)))
    tcfg = TrainConfig(batch_size=96, total_tokens=96 * 12, seed=0, device="cpu", log_every=4, checkpoint_every=5)
    jobs = [HookpointJob(hp, cfg) for hp, cfg in JOBS]
    producer = LiveHookSource(model, tokens, hps, seed=0) if rank == 0 else None
    got = train_hookpoints(jobs, producer, tcfg, out_dir=Path(out) / "dist", progress=False)
    owned = [j for i, j in enumerate(jobs) if i % world == rank]
    assert sorted(got) == sorted(j.name for j in owned)
    for job in owned:
        # The reference: one process, only this hookpoint read from the model.
        alone = HookpointSource(LiveHookSource(model, tokens, list(job.keys), seed=0), job.hookpoint)
        ref = Trainer(job.cfgs, alone, tcfg, progress=False).fit()[0]
        mine = got[job.name][0]
        for key, value in ref.state_dict().items():
            assert torch.equal(mine.state_dict()[key], value), f"rank {rank} job {job.name} {key}"
        folder = Path(out) / "dist" / job.name
        assert (folder / "sae_weights.safetensors").is_file() and (folder / "checkpoint.pt").is_file()
        assert (folder / "metrics.jsonl").read_text().count("\n") == 12 // 4 + 1
    _check_resume(rank, world, out, model, tokens, hps, tcfg)
    shutdown()
    exit_process(0)  # skip gloo teardown at interpreter exit (see saekit.parallel.comm.exit_process)


def _check_resume(rank, world, out, model, tokens, hps, tcfg) -> None:
    """A run stopped right after its step-5 checkpoints, resumed: the same weights."""
    from safetensors.torch import load_file

    from saekit.parallel.hookpoints import HookpointJob, LiveHookSource, train_hookpoints

    jobs = [HookpointJob(hp, cfg) for hp, cfg in JOBS]
    producer = LiveHookSource(model, tokens, hps, seed=0) if rank == 0 else None
    root = Path(out) / "resumed"
    _run_until(jobs, producer, tcfg, root, stop_after=5)
    got = train_hookpoints(jobs, producer, tcfg, out_dir=root, resume=True, progress=False)
    for i, job in enumerate(jobs):
        if i % world != rank:
            continue
        ref = load_file(str(Path(out) / "dist" / job.name / "sae_weights.safetensors"))
        now = load_file(str(root / job.name / "sae_weights.safetensors"))
        for key in ref:
            assert torch.equal(ref[key], now[key]), f"resume: rank {rank} job {job.name} {key}"
        assert job.name in got


def _run_until(jobs, producer, tcfg, root: Path, stop_after: int) -> None:
    """Train, then stop (as a crash would) right after the checkpoint of step ``stop_after``."""
    from saekit.parallel import hookpoints as dh

    real = dh._checkpoint

    class Stop(Exception):
        pass

    def checkpoint_then_stop(trainers, ex, out, rank, step):
        real(trainers, ex, out, rank, step)
        if step == stop_after:
            ex.close()
            raise Stop

    dh._checkpoint = checkpoint_then_stop
    try:
        dh.train_hookpoints(jobs, producer, tcfg, out_dir=root, progress=False)
    except Stop:
        pass
    finally:
        dh._checkpoint = real


def test_distributed_hookpoints_equal_single_hookpoint_training(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)


def _dying_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 1 dies (os._exit) after its step-40 checkpoint; rank 0 must stop with DistributedError."""
    import json
    import threading
    import time

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from saekit.parallel.comm import DistributedError, init_distributed
    from saekit.parallel.hookpoints import HookpointJob, TensorHookSource, train_hookpoints
    from saekit.training import load_checkpoint

    init_distributed(timeout_s=10, backend="gloo")
    gen = torch.Generator().manual_seed(0)
    acts = {"a": torch.randn(512, 8, generator=gen), "b": torch.randn(512, 8, generator=gen)}
    jobs = [HookpointJob(h, DictionaryConfig(kind="topk", d_in=8, n_latents=16, k=2)) for h in ("a", "b")]
    tcfg = TrainConfig(batch_size=16, total_tokens=16 * 200_000, seed=0, device="cpu", log_every=0, checkpoint_every=20)
    died = {}
    if rank == 1:  # dies (no cleanup, sockets dropped) once its step-40 checkpoint is on disk

        def die_after_second_checkpoint() -> None:
            ckpt = Path(out) / "die" / "b" / "checkpoint.pt"
            while not (ckpt.exists() and load_checkpoint(ckpt)["step"] >= 40):
                time.sleep(0.005)
            os._exit(0)

        threading.Thread(target=die_after_second_checkpoint, daemon=True).start()
    else:  # rank 0 watches the same file to know when rank 1 died

        def watch() -> None:
            ckpt = Path(out) / "die" / "b" / "checkpoint.pt"
            while not (ckpt.exists() and load_checkpoint(ckpt)["step"] >= 40):
                time.sleep(0.005)
            died["t"] = time.time()

        threading.Thread(target=watch, daemon=True).start()
    result: dict = {}
    try:
        train_hookpoints(jobs, TensorHookSource(acts) if rank == 0 else None, tcfg, out_dir=Path(out) / "die", progress=False)
        result["error"] = None
    except DistributedError as e:
        result["error"] = str(e)
        result["after_death_s"] = time.time() - died.get("t", 0.0)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    os._exit(0)  # a broken group cannot be torn down cleanly


def test_dead_owner_rank_stops_producer_with_clear_error(tmp_path):
    import json

    from saekit.training import load_checkpoint

    mp.spawn(_dying_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    res = json.loads((tmp_path / "rank0.json").read_text())
    assert res["error"] and "rank 0 of 2 could not complete" in res["error"] and "another rank died" in res["error"]
    assert res["after_death_s"] < 10 + 5
    state = load_checkpoint(tmp_path / "die" / "a" / "checkpoint.pt")  # rank 0's job: intact
    assert state["step"] in (20, 40)


def test_collectives_without_a_group_are_those_of_a_world_of_one():
    from saekit.parallel import comm

    assert comm.solo() and comm.rank_and_world() == (0, 1)
    t = torch.tensor([1.0, 2.0])
    assert comm.all_reduce(t) is t and torch.equal(t, torch.tensor([1.0, 2.0]))
    assert comm.broadcast(t) is t and comm.all_gather(t) == [t]
    assert comm.broadcast_object({"a": 1}) == {"a": 1} and comm.all_gather_object(3) == [3]
    assert comm.comm_device() == torch.device("cpu")
    comm.barrier()  # returns at once
