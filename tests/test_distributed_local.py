"""Data parallel with local data (``data="local"``) on 2 real gloo processes: each rank reads
only its own disjoint part of the activations; training equals one process whose global batch
is the two ranks' local batches side by side, and a resume from a mid-run checkpoint (which
holds both ranks' read positions) equals the uninterrupted run."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from saekit.config import DictionaryConfig, TrainConfig
from saekit.training.sources import BatchSource, TensorSource

CFG = DictionaryConfig(kind="topk", d_in=16, n_latents=96, k=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _SideBySide(BatchSource):
    """The single-process reference: rank 0's rows then rank 1's, from their own orders."""

    def __init__(self, parts: list[torch.Tensor], seed: int):
        self.srcs = [TensorSource(p, seed=seed) for p in parts]
        self.d_in = self.d_out = parts[0].shape[1]
        self.paired = False

    def next_batch(self, batch_size: int):
        n = batch_size // len(self.srcs)
        return torch.cat([s.next_batch(n)[0] for s in self.srcs]), None

    def sample(self, n: int):
        return self.srcs[0].sample(n)  # the initialisation is rank 0's


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from saekit.parallel import DataParallelTrainer, init_distributed, shutdown, train_data_parallel
    from saekit.parallel.comm import exit_process
    from saekit.training import Trainer

    init_distributed(timeout_s=60, backend="gloo")
    torch.manual_seed(0)
    x = (torch.randn(2048, 16) @ torch.randn(16, 16)).contiguous()
    mine = x[rank::world]
    tcfg = TrainConfig(batch_size=128, total_tokens=128 * 20, seed=0, device="cpu", log_every=5, checkpoint_every=6)
    full = train_data_parallel(CFG, mine, tcfg.replace(out_dir=f"{out}/a"), progress=False, data="local")
    if rank == 0:
        ref = Trainer(CFG, _SideBySide([x[r::world] for r in range(world)], seed=0), tcfg, progress=False).fit()[0]
        for key, value in ref.state_dict().items():
            torch.testing.assert_close(full.state_dict()[key], value, atol=1e-5, rtol=1e-4, msg=key)

    # Stop after 7 steps with a checkpoint (as a killed run leaves it), resume in new trainers.
    Path(f"{out}/b").mkdir(exist_ok=True)
    tb = tcfg.replace(out_dir=f"{out}/b")
    first = DataParallelTrainer(CFG, mine, tb, progress=False, data="local")
    for _ in range(7):
        first.step(*first.next_batch())
    first.save_checkpoint()
    again = DataParallelTrainer(CFG, mine, tb, progress=False, data="local").resume()
    assert again.step_count == 7
    resumed = again.fit()[0]
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), f"resume: {key}"
    shutdown()
    exit_process(0)  # skip gloo teardown at interpreter exit (see saekit.parallel.comm.exit_process)


def test_local_data_parallel_equals_side_by_side_batches_and_resumes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
