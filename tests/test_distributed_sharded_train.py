"""Training a latent-sharded TopK dictionary on 2 real gloo processes with the ordinary loop
(``LatentShardedTrainer``): AuxK active, gradient clipping active, the gathered dictionary
equals a single-process ``Trainer``'s, rank 0 writes a loadable dictionary folder, and a resume
from the per-rank checkpoints equals the uninterrupted run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from saekit.config import DictionaryConfig, TrainConfig

CFG = DictionaryConfig(kind="topk", d_in=16, n_latents=96, k=4, k_aux=8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    import saekit
    from saekit.parallel.comm import exit_process, init_distributed, shutdown
    from saekit.parallel.latent_sharded import LatentShardedTrainer
    from saekit.training import Trainer

    init_distributed(timeout_s=60, backend="gloo")
    torch.manual_seed(0)
    x = (torch.randn(2048, 16) @ torch.randn(16, 16)).contiguous()
    # dead_tokens small so AuxK runs; grad_clip small so clipping by the global norm matters.
    tcfg = TrainConfig(
        batch_size=128, total_tokens=128 * 24, seed=0, device="cpu", log_every=4, checkpoint_every=8,
        dead_tokens=256, grad_clip=0.5, lr=3e-3,
    )
    got = LatentShardedTrainer(CFG, x, tcfg.replace(out_dir=f"{out}/a"), progress=False).fit()[0]
    ref_trainer = Trainer(CFG, x, tcfg, progress=False)
    ref = ref_trainer.fit()[0]
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(got.state_dict()[key], value, atol=1e-4, rtol=1e-3, msg=key)
    if rank == 0:
        loaded = saekit.load(f"{out}/a")
        # the folder holds the normalisation folded in (W_dec / act_scale; every kind is normalised by default)
        torch.testing.assert_close(loaded.W_dec, ref.W_dec / ref.act_scale, atol=1e-4, rtol=1e-3)
        logged = [json.loads(line) for line in Path(f"{out}/a/metrics.jsonl").read_text().splitlines()]
        want = ref_trainer.metrics.records
        assert [r["step"] for r in logged] == [r["step"] for r in want]
        assert any(r.get("aux", 0) > 0 for r in logged)  # AuxK ran
        for a, b in zip(logged, want):
            for k in ("loss", "fvu", "l0", "dead_fraction"):
                assert abs(a[k] - b[k]) <= 1e-3 * max(1.0, abs(b[k])), (k, a[k], b[k])

    # Stop after 11 steps with a checkpoint on every rank, resume in new trainers.
    tb = tcfg.replace(out_dir=f"{out}/b")
    first = LatentShardedTrainer(CFG, x, tb, progress=False)
    for _ in range(11):
        first.step(*first.next_batch())
    first.save_checkpoint()
    assert Path(f"{out}/b/checkpoint.rank{rank}-of-{world}.pt").is_file()
    again = LatentShardedTrainer(CFG, x, tb, progress=False).resume()
    resumed = again.fit()[0]
    for key, value in got.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), f"resume: {key}"
    shutdown()
    exit_process(0)  # skip gloo teardown at interpreter exit (see saekit.parallel.comm.exit_process)


def test_latent_sharded_training_equals_single_process_and_resumes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
