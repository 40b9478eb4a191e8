"""Latent-sharded TopK on 2 real gloo processes equals the unsharded dictionary: codes, sparse
codes, decode, forward, every loss term (MSE, AuxK, Multi-TopK), every gradient, the fired
mask, the strategy's gradient reduction and global-norm clipping, a few Adam steps of training,
and the gathers (to every rank, and to the writing rank's CPU only); for an SAE with an even split and a skip transcoder
with an uneven one (16 + 15 latents)."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from saekit.config import DictionaryConfig
from saekit.dictionaries import create
from saekit.parallel.latent_sharded import LatentSharded
from saekit.parallel.sharded_topk import ShardedTopK, latent_bounds

CONFIGS = [
    DictionaryConfig(kind="topk", d_in=16, n_latents=64, k=4, k_aux=6, multi_topk=True),
    DictionaryConfig(kind="topk", d_in=16, d_out=12, n_latents=31, k=3, skip=True, k_aux=5),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _full(cfg: DictionaryConfig) -> torch.nn.Module:
    sae = create(cfg, seed=1)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # move every parameter off its init so nothing matches by accident
        sae.b_dec.copy_(0.1 * torch.randn(cfg.d_out, generator=gen))
        sae.b_enc.copy_(0.05 * torch.randn(cfg.n_latents, generator=gen))
        if sae.W_skip is not None:
            sae.W_skip.copy_(0.1 * torch.randn(cfg.d_out, cfg.d_in, generator=gen))
        sae.act_scale.fill_(1.7)
    return sae


def _check(cfg: DictionaryConfig, rank: int) -> None:
    full = _full(cfg)
    shard = ShardedTopK.from_full(full)
    s, e = shard.start, shard.stop
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20, cfg.d_in, generator=gen)
    y = torch.randn(20, cfg.d_out, generator=gen) if cfg.transcoder else None
    close = dict(atol=1e-5, rtol=1e-5)

    with torch.no_grad():
        torch.testing.assert_close(shard.encode(x), full.encode(x), **close)
        v_s, i_s = shard.encode_sparse(x)
        v_f, i_f = full.encode_sparse(x)
        o_s, o_f = i_s.sort(-1), i_f.sort(-1)
        assert torch.equal(o_s.values, o_f.values)
        torch.testing.assert_close(v_s.gather(-1, o_s.indices), v_f.gather(-1, o_f.indices), **close)
        torch.testing.assert_close(shard.decode_sparse(v_f, i_f), full.decode_sparse(v_f, i_f), **close)
        z = full.encode(x)
        torch.testing.assert_close(shard.decode(z), full.decode(z), **close)
        torch.testing.assert_close(shard(x), full(x), **close)

    # Gradients: half the latents dead so AuxK contributes; x itself needs a gradient too.
    dead = torch.rand(cfg.n_latents, generator=gen) < 0.5
    x_f, x_s = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_f = full.training_loss(x_f, y, dead_mask=dead)
    out_s = shard.training_loss(x_s, y, dead_mask=dead[s:e])
    assert set(out_f.terms) == set(out_s.terms) and "aux" in out_s.terms
    for k in out_f.terms:
        torch.testing.assert_close(out_s.terms[k], out_f.terms[k], **close)
    assert torch.equal(out_s.fired, out_f.fired[s:e])
    torch.testing.assert_close(out_s.l0, out_f.l0)
    out_f.loss.backward()
    out_s.loss.backward()
    grads = {
        "W_enc": (shard.W_enc.grad, full.W_enc.grad[:, s:e]),
        "b_enc": (shard.b_enc.grad, full.b_enc.grad[s:e]),
        "W_dec": (shard.W_dec.grad, full.W_dec.grad[s:e]),
        "b_dec": (shard.b_dec.grad, full.b_dec.grad),
        "x": (x_s.grad, x_f.grad),
    }
    if cfg.skip:
        grads["W_skip"] = (shard.W_skip.grad, full.W_skip.grad)
    for name, (got, want) in grads.items():
        assert want.abs().max() > 0, name
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=f"rank {rank} grad {name}")

    # The strategy's gradient reduction gives every rank rank 0's replicated gradients, and its
    # clipping uses the norm of the whole dictionary (as clip_grad_norm_ on the full one).
    strategy = LatentSharded()
    assert strategy.world_size == 2
    shard.b_dec.grad.add_(float(rank))  # the ranks now disagree
    strategy.reduce_gradients(shard)
    torch.testing.assert_close(shard.b_dec.grad, full.b_dec.grad, atol=1e-5, rtol=1e-4)
    total = torch.nn.utils.clip_grad_norm_(full.parameters(), 0.05)
    assert total > 0.05  # the clip bites
    strategy.clip_gradients(shard, 0.05)
    for name, (got, want) in grads.items():
        if name != "x":
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4, msg=f"rank {rank} clipped grad {name}")

    # A few Adam steps with the decoder constraints: the gathered shards track the full model.
    opt_f = torch.optim.Adam(full.parameters(), lr=1e-2)
    opt_s = torch.optim.Adam(shard.parameters(), lr=1e-2)
    for _ in range(4):
        xb = torch.randn(32, cfg.d_in, generator=gen)
        yb = torch.randn(32, cfg.d_out, generator=gen) if cfg.transcoder else None
        for model, opt, mask in ((full, opt_f, dead), (shard, opt_s, dead[s:e])):
            opt.zero_grad()
            model.training_loss(xb, yb, dead_mask=mask).loss.backward()
            model.remove_parallel_decoder_grad()
            opt.step()
            model.after_step()
    gathered = shard.gather_full()
    for key, value in full.state_dict().items():
        torch.testing.assert_close(gathered.state_dict()[key], value, atol=1e-4, rtol=1e-4, msg=f"after training: {key}")
    # To the writing rank only: the whole dictionary in its CPU memory, nothing on the others.
    to_writer = shard.gather_full(dst=0)
    if rank == 0:
        assert to_writer.W_dec.device.type == "cpu"
        for key, value in gathered.state_dict().items():
            assert torch.equal(to_writer.state_dict()[key], value), key
    else:
        assert to_writer is None


def _worker(rank: int, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from saekit.parallel.comm import exit_process, init_distributed, shutdown

    init_distributed(timeout_s=60, backend="gloo")
    try:
        for cfg in CONFIGS:
            _check(cfg, rank)
    finally:
        shutdown()
    exit_process(0)  # skip gloo teardown at interpreter exit (see saekit.parallel.comm.exit_process)


def test_sharded_topk_equals_unsharded_on_two_ranks():
    mp.spawn(_worker, args=(2, _free_port()), nprocs=2, join=True)


def test_latent_bounds_cover_every_latent_once():
    for n, w in ((64, 2), (31, 2), (10, 3), (7, 7)):
        b = latent_bounds(n, w)
        assert b[0][0] == 0 and b[-1][1] == n
        assert all(b[i][1] == b[i + 1][0] for i in range(w - 1))
        assert max(e - s for s, e in b) - min(e - s for s, e in b) <= 1
