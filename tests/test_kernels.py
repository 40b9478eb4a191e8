"""saekit.kernels on CPU: the torch reference and dense backends against the definition, the
backend dispatch rules, the sparse top-k encoder backward, and a TopK dictionary trained through
the sparse path vs the dense path. (The Triton kernels are tested in test_kernels_triton.py.)"""

from __future__ import annotations

import pytest
import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError
from saekit.kernels import (
    dense_decode,
    reference,
    resolve_backend,
    sparse_decode,
    sparse_decode_naive,
    topk_encode,
    topk_encode_dense,
    use_backend,
)

TOL = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
    torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2),
}


def _case(B, k, n, d, dtype=torch.float32, seed=0, repeat=False, noncontig=False):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (B, k), generator=g)
    if repeat and k >= 2 and B > 0:
        idx[:, 1] = idx[:, 0]
        idx[0] = idx[0, 0]
    vals = torch.randn(B, k, generator=g)
    W = torch.randn(n, d, generator=g)
    b = torch.randn(d, generator=g)
    gout = torch.randn(B, d, generator=g)
    if noncontig:
        idx = idx.t().contiguous().t()
        vals = torch.randn(k, B, generator=g).t()
        W = torch.randn(d, n, generator=g).t()
        gout = torch.randn(B, 2 * d, generator=g)[:, ::2]
    return idx, vals.to(dtype), W.to(dtype), b.to(dtype), gout.to(dtype)


def _run(fn, idx, vals, W, b, gout):
    leaves = [t.detach().clone().requires_grad_(True) for t in (vals, W, b)]
    out = fn(idx, *leaves)
    return out, torch.autograd.grad(out, leaves, gout)


def _close(actual, expected, dtype, what=""):
    assert actual.dtype == dtype, what
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(
        actual.float(), expected.float(), atol=TOL[dtype]["atol"] * scale, rtol=TOL[dtype]["rtol"]
    )


SHAPES = [(1, 1, 5, 8), (7, 5, 13, 37), (4, 9, 9, 20), (3, 40, 50, 300), (0, 3, 5, 4), (4, 0, 5, 4)]


@pytest.mark.parametrize("backend", ["torch", "dense"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_backends_match_definition(backend, shape, dtype):
    idx, vals, W, b, gout = _case(*shape, dtype=dtype, seed=sum(shape))
    out, grads = _run(lambda i, v, w, bb: sparse_decode(i, v, w, bb, backend=backend), idx, vals, W, b, gout)
    ref, ref_grads = _run(sparse_decode_naive, idx, vals.float(), W.float(), b.float(), gout.float())
    _close(out, ref, dtype, "out")
    for what, got, exp in zip(("vals", "W_dec", "b_dec"), grads, ref_grads):
        _close(got, exp, dtype, what)


@pytest.mark.parametrize("case", ["repeat", "noncontig", "chunked"])
def test_reference_edge_cases(case, monkeypatch):
    if case == "chunked":  # force many row chunks in the gather / index_add loops
        monkeypatch.setattr(reference, "_CHUNK_ELEMENTS", 50)
    idx, vals, W, b, gout = _case(21, 4, 6, 10, seed=3, repeat=case == "repeat", noncontig=case == "noncontig")
    for dtype in (torch.float32, torch.bfloat16):  # bf16 takes the gather path rather than embedding_bag
        args = (idx, vals.to(dtype), W.to(dtype), b.to(dtype), gout.to(dtype))
        out, grads = _run(lambda i, v, w, bb: sparse_decode(i, v, w, bb, backend="torch"), *args)
        ref, ref_grads = _run(sparse_decode_naive, idx, vals, W, b, gout)
        _close(out, ref, dtype)
        for got, exp in zip(grads, ref_grads):
            _close(got, exp, dtype)


def test_dense_decode_equals_z_matmul():
    idx, vals, W, b, _ = _case(6, 3, 10, 7, seed=1, repeat=True)
    z = torch.zeros(6, 10).index_put_((torch.arange(6)[:, None].expand(6, 3), idx), vals, accumulate=True)
    torch.testing.assert_close(dense_decode(idx, vals, W, b), z @ W + b)


def test_leading_dims_and_no_bias():
    idx, vals, W, _, _ = _case(6, 3, 10, 7, seed=2)
    out = sparse_decode(idx.reshape(2, 3, 3), vals.reshape(2, 3, 3), W)
    torch.testing.assert_close(out, sparse_decode_naive(idx, vals, W).reshape(2, 3, 7))


def test_bad_inputs_fail_with_one_sentence():
    idx, vals, W, b, _ = _case(4, 3, 10, 7)
    with pytest.raises(ValueError, match="same shape|one shape"):
        sparse_decode(idx[:, :2], vals, W)
    with pytest.raises(ValueError, match="integer"):
        sparse_decode(vals, vals, W)
    with pytest.raises(ValueError, match="b_dec"):
        sparse_decode(idx, vals, W, b[:3])
    with pytest.raises(ConfigError, match="backend"):
        sparse_decode(idx, vals, W, backend="cuda")


def test_dispatch_rules(monkeypatch):
    monkeypatch.delenv("SAEKIT_KERNELS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert resolve_backend("auto", "cpu") == "torch"  # CPU tensors: the reference
    assert resolve_backend("auto", "cuda") == ("triton" if _has_triton() else "torch")
    assert resolve_backend("dense", "cuda") == "dense"
    with use_backend("dense"):
        assert resolve_backend("auto", "cpu") == "dense"  # the context replaces "auto"
        assert resolve_backend("torch", "cpu") == "torch"  # an explicit argument wins
        with use_backend("torch"):
            assert resolve_backend("auto", "cpu") == "torch"
        assert resolve_backend("auto", "cpu") == "dense"  # restored on exit
    assert resolve_backend("auto", "cpu") == "torch"
    if _has_triton():
        with pytest.raises(ConfigError, match="TRITON_INTERPRET"):
            resolve_backend("triton", "cpu")  # no GPU and no interpreter: a clear error, not a crash
        monkeypatch.setenv("SAEKIT_KERNELS", "torch")  # the environment overrides everything
        assert resolve_backend("triton", "cuda") == "torch"
        with use_backend("triton"):
            assert resolve_backend("auto", "cuda") == "torch"
    monkeypatch.setenv("SAEKIT_KERNELS", "fast")
    with pytest.raises(ConfigError, match="SAEKIT_KERNELS"):
        resolve_backend("auto", "cpu")
    with pytest.raises(ConfigError, match="use_kernels"):
        TrainConfig(use_kernels="fast")
    assert TrainConfig(use_kernels="dense").use_kernels == "dense"


def _has_triton() -> bool:
    from saekit.kernels import triton_available

    return triton_available()


@pytest.mark.parametrize("shape", [(1, 8, 6, 1), (5, 12, 7, 7), (9, 37, 40, 5)], ids=["B1_k1", "k_eq_n", "d37"])
def test_topk_encode_sparse_backward_matches_dense(shape):
    B, d_in, n, k = shape
    g = torch.Generator().manual_seed(n)
    x, W, bias = (
        torch.randn(B, d_in, generator=g),
        torch.randn(d_in, n, generator=g),
        torch.randn(n, generator=g),
    )
    gv = torch.randn(B, k, generator=g)

    def run(fn):
        leaves = [t.clone().requires_grad_(True) for t in (x, W, bias)]
        vals, idx = fn(*leaves, k)
        return vals, idx, torch.autograd.grad(vals, leaves, gv)

    vals, idx, grads = run(lambda a, w, bb, kk: topk_encode(a, w, bb, kk, backend="torch"))
    rvals, ridx, rgrads = run(topk_encode_dense)
    assert torch.equal(idx, ridx)
    torch.testing.assert_close(vals, rvals)
    for got, exp in zip(grads, rgrads):
        torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-5)
    # the gradient of W_enc is non-zero only in the columns of selected, positive latents
    used = torch.zeros(n, dtype=torch.bool)
    used[idx[vals > 0]] = True
    assert bool((grads[1][:, ~used] == 0).all()) and bool((grads[1][:, used] != 0).any())


def test_topk_encode_in_row_blocks_equals_one_block(monkeypatch):
    """On CPU the encoder's forward takes its rows in blocks when [B, n] is large (no fresh
    [B, n] mapping per step): the values, indices and gradients are those of one block, to the bit."""
    from saekit.kernels import encoder

    g = torch.Generator().manual_seed(3)
    x, W, bias = torch.randn(200, 12, generator=g), torch.randn(12, 40, generator=g), torch.randn(40, generator=g)
    gv = torch.randn(200, 5, generator=g)

    def run():
        leaves = [t.clone().requires_grad_(True) for t in (x, W, bias)]
        vals, idx = topk_encode(*leaves, 5, backend="torch")
        return vals, idx, torch.autograd.grad(vals, leaves, gv)

    whole = run()
    calls = []
    real_topk = torch.topk
    monkeypatch.setattr(encoder, "_CPU_BLOCK_ELEMENTS", 64 * 40)  # 64 rows a block: 64, 64, 64, 8
    monkeypatch.setattr(encoder.torch, "topk", lambda t, *a, **kw: calls.append(t.shape[0]) or real_topk(t, *a, **kw))
    blocks = run()
    assert calls == [64, 64, 64, 8]
    assert torch.equal(blocks[0], whole[0]) and torch.equal(blocks[1], whole[1])
    for got, exp in zip(blocks[2], whole[2]):
        assert torch.equal(got, exp)


def _planted(N=2048, d=16, n_true=48, active=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.nn.functional.normalize(torch.randn(n_true, d, generator=g), dim=-1)
    idx = torch.stack([torch.randperm(n_true, generator=g)[:active] for _ in range(N)])
    coef = torch.rand(N, active, generator=g) * 2 + 0.5
    return (coef[:, :, None] * D[idx]).sum(1) + 0.01 * torch.randn(N, d, generator=g)


def _loss_curve(X, backend: str, monkeypatch) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Train through TrainConfig.use_kernels (the trainer applies it with use_backend); count the
    dense decodes so a trainer that ignored the setting could not pass vacuously."""
    import saekit.kernels as kernels
    from saekit.training.loop import Trainer

    calls = {"dense": 0}
    real_dense = kernels.dense_decode

    def counting_dense(*args, **kwargs):
        calls["dense"] += 1
        return real_dense(*args, **kwargs)

    monkeypatch.setattr(kernels, "dense_decode", counting_dense)

    cfg = DictionaryConfig(kind="topk", d_in=16, n_latents=64, k=4, seed=0)
    tcfg = TrainConfig(
        batch_size=128, total_tokens=128 * 40, lr=1e-2, lr_warmup_steps=5, log_every=1, seed=0,
        dead_tokens=512, use_kernels=backend, device="cpu",
    )  # fmt: skip
    trainer = Trainer(cfg, X, tcfg, progress=False)
    sae = trainer.fit()[0]
    assert (calls["dense"] > 0) == (backend == "dense"), f"use_kernels={backend!r} not applied: {calls}"
    records = [r for r in trainer.metrics.records if r["dict"] == trainer.names[0]]
    assert len(records) == tcfg.steps
    return [r["loss"] for r in records], {k: v.detach().clone() for k, v in sae.state_dict().items()}


def test_topk_training_sparse_path_matches_dense_path(monkeypatch):
    """Same seed, same batches: the kernel (sparse) decode and the dense z @ W_dec decode give the
    same loss curve (only fp32 summation order differs) and nearly the same weights."""
    X = _planted()
    sparse_losses, sparse_w = _loss_curve(X, "torch", monkeypatch)
    dense_losses, dense_w = _loss_curve(X, "dense", monkeypatch)
    assert sparse_losses[-1] < 0.5 * sparse_losses[0], "the dictionary should learn the planted features"
    torch.testing.assert_close(torch.tensor(sparse_losses), torch.tensor(dense_losses), rtol=1e-3, atol=1e-5)
    for name in sparse_w:
        torch.testing.assert_close(
            sparse_w[name], dense_w[name], rtol=1e-3, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize("backend", ["torch", "dense"])
def test_mixed_dtypes_promote(backend):
    """fp32 codes with a bf16 decoder decode to fp32 (the promoted dtype), like z @ W_dec would."""
    idx, vals, W, b, gout = _case(5, 3, 9, 12, seed=4)
    Wb = W.bfloat16()
    out, grads = _run(lambda i, v, w, bb: sparse_decode(i, v, w, bb, backend=backend), idx, vals, Wb, b, gout)
    ref, ref_grads = _run(sparse_decode_naive, idx, vals, Wb.float(), b, gout)
    assert out.dtype == torch.float32 and grads[1].dtype == torch.bfloat16
    _close(out, ref, torch.float32)
    _close(grads[0], ref_grads[0], torch.float32)
    _close(grads[1], ref_grads[1].bfloat16(), torch.bfloat16)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sparse_autograd_function_matches_definition(shape):
    """The custom Function (used for half precision and strided W_dec; fp32 contiguous W_dec goes
    through embedding_bag's autograd) is exact in fp32 too: SDDMM grad vals, CSR grad W_dec."""
    idx, vals, W, b, gout = _case(*shape, seed=sum(shape) + 1, repeat=True)
    out, grads = _run(reference.SparseDecodeTorch.apply, idx, vals, W, b, gout)
    ref, ref_grads = _run(sparse_decode_naive, idx, vals, W, b, gout)
    _close(out, ref, torch.float32)
    for got, exp in zip(grads, ref_grads):
        _close(got, exp, torch.float32)


# fewer dead latents than k_aux (8), a few more (dense decode: at most DENSE_AUX_FACTOR·k_aux), many more (sparse)
@pytest.mark.parametrize("n_dead", [3, 20, 40])
def test_topk_auxk_through_the_sparse_encoder_equals_the_dense_path(n_dead):
    """AuxK on the sparse-backward path (pre-activations of the dead latents only) gives the
    loss terms and every gradient of the dense path (full pre-activations, masked top-k, dense
    encoder backward), including the encoder gradients that revive dead latents."""
    from saekit.dictionaries import create

    torch.manual_seed(0)
    cfg = DictionaryConfig(kind="topk", d_in=16, n_latents=64, k=4)
    x = torch.randn(256, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[torch.randperm(64)[:n_dead]] = True

    def terms_and_grads(fused: bool):
        sae = create(cfg, seed=1)
        sae.b_dec.data = 0.1 * torch.randn(16, generator=torch.Generator().manual_seed(2))
        sae.fused_encode = fused  # False: the dense path
        out = sae.training_loss(x, dead_mask=dead)
        out.loss.backward()
        return {k: float(v.detach()) for k, v in out.terms.items()}, {n: p.grad.clone() for n, p in sae.named_parameters()}

    sparse_terms, sparse_grads = terms_and_grads(True)
    dense_terms, dense_grads = terms_and_grads(False)
    assert set(sparse_terms) == {"mse", "aux"} and sparse_terms["aux"] > 0
    assert sparse_terms == pytest.approx(dense_terms, rel=1e-5)
    dead_cols = sparse_grads["W_enc"][:, dead]
    assert dead_cols.abs().sum() > 0, "AuxK must give the dead latents' encoder a gradient"
    for name, g in dense_grads.items():
        torch.testing.assert_close(sparse_grads[name], g, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
