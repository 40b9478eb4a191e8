"""The Triton kernels equal their references: forward and every gradient, over edge-case shapes.

How this runs without a GPU: Triton executes on CPU tensors only in interpreter mode, and
TRITON_INTERPRET=1 must be set before triton is first imported (triton.language decorates its
own helpers at import). Another test module may import triton earlier in the same pytest
process, and setting the variable here would leak into every later module, so on a machine
without CUDA this module runs itself in a fresh subprocess with TRITON_INTERPRET=1
(``test_kernels_under_triton_interpreter``), where the kernel tests below are defined and run on
CPU. With CUDA, the same kernel tests run in-process on the GPU (compiled, no interpreter).

Tolerances (vs an fp32 computation from the same inputs): fp32 outputs atol/rtol 1e-5 (only the
summation order differs); fp16 outputs rtol/atol 2e-3; bf16 outputs rtol/atol 1.6e-2 (the result
is rounded once to the output dtype after fp32 accumulation: 2^-11 and 2^-8 relative).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

IN_CHILD = os.environ.get("TRITON_INTERPRET") == "1" and os.environ.get("SAEKIT_TRITON_TEST_CHILD") == "1"
HAS_CUDA = torch.cuda.is_available()
RUN_KERNELS = HAS_CUDA or IN_CHILD
TOL = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
    torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2),
}

if not RUN_KERNELS:
    # Two child runs, so that neither takes much more than ~30 s on a 2-core machine.
    GROUPS = {"decoder": ("decode or grad_rows or sort", 27), "encoder_and_training": ("topk", 11)}

    @pytest.mark.parametrize("group", list(GROUPS))
    def test_kernels_under_triton_interpreter(group):
        """Run this module's kernel tests in a fresh process with TRITON_INTERPRET=1 (CPU)."""
        pytest.importorskip("triton")  # triton is a Linux-only dependency
        selection, expected = GROUPS[group]
        env = dict(os.environ, TRITON_INTERPRET="1", SAEKIT_TRITON_TEST_CHILD="1", SAEKIT_KERNELS="")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider", "-k", selection],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=Path(__file__).resolve().parents[1],
        )
        tail = proc.stdout[-6000:] + proc.stderr[-2000:]
        assert proc.returncode == 0, f"Triton interpreter tests failed:\n{tail}"
        m = re.search(r"(\d+) passed", proc.stdout)
        assert m and int(m.group(1)) == expected, f"expected {expected} kernel tests to run and pass:\n{tail}"
        assert "skipped" not in proc.stdout and "failed" not in proc.stdout, tail

else:
    from saekit.kernels import sparse_decode, sparse_decode_naive, topk_encode, topk_encode_dense
    from saekit.kernels import triton_decode as td

    DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")

    def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
        assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
        scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
        tol = TOL[dtype]
        torch.testing.assert_close(
            actual.float(),
            expected.float(),
            atol=tol["atol"] * scale,
            rtol=tol["rtol"],
            msg=lambda m: f"{what}: {m}",
        )

    def _make(B, k, n, d, dtype, *, seed=0, repeat=False, noncontig=False, hot=False, bias=True):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (B, k), generator=g)
        if repeat and k >= 2:
            idx[:, 1] = idx[:, 0]  # the same latent twice in every row
            idx[0, :] = idx[0, 0]  # and one row made of a single latent
        if hot:
            idx[:, 0] = 3 % n  # one latent used by every row (many (b, j) pairs for one program)
        vals = torch.randn(B, k, generator=g)
        W = torch.randn(n, d, generator=g) / d**0.5
        b = torch.randn(d, generator=g) if bias else None
        gout = torch.randn(B, d, generator=g)
        if noncontig:
            # transposed storage and strided slices: every tensor has a non-unit or swapped stride
            idx = idx.t().contiguous().t()
            vals = torch.randn(k, 2 * B, generator=g).t()[::2]
            W = torch.randn(d, n, generator=g).t() / d**0.5
            gout = torch.randn(B, 2 * d, generator=g)[:, ::2]
            assert not (idx.is_contiguous() or vals.is_contiguous() or W.is_contiguous() or gout.is_contiguous())
        dev = DEVICE
        return (
            idx.to(dev),
            vals.to(dev, dtype),
            W.to(dev, dtype),
            b.to(dev, dtype) if b is not None else None,
            gout.to(dev, dtype),
        )

    def _decode_and_grads(idx, vals, W, b, gout, fn):
        leaves = [t.detach().clone().requires_grad_(True) for t in (vals, W) + ((b,) if b is not None else ())]
        out = fn(idx, leaves[0], leaves[1], leaves[2] if b is not None else None)
        grads = torch.autograd.grad(out, leaves, gout)
        return out, grads

    SHAPES = {
        "B1_k1": (1, 1, 5, 8),
        "d_not_multiple": (7, 5, 13, 37),
        "k_eq_n": (4, 9, 9, 20),
        "multi_blocks": (3, 40, 50, 300),  # k > BLOCK_K and d > BLOCK_D, neither a multiple
        "tall": (33, 4, 6, 16),
    }

    @pytest.mark.parametrize("name", list(SHAPES))
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
    def test_decode_matches_reference(name, dtype):
        B, k, n, d = SHAPES[name]
        idx, vals, W, b, gout = _make(B, k, n, d, dtype, seed=len(name))
        out, grads = _decode_and_grads(idx, vals, W, b, gout, lambda i, v, w, bb: sparse_decode(i, v, w, bb, "triton"))
        ref, ref_grads = _decode_and_grads(idx, vals.float(), W.float(), b.float(), gout.float(), sparse_decode_naive)
        _close(out, ref, dtype, "out")
        for what, got, exp in zip(("grad vals", "grad W_dec", "grad b_dec"), grads, ref_grads):
            _close(got, exp, dtype, what)

    @pytest.mark.parametrize("case", ["repeat", "noncontig", "hot", "no_bias", "int32_idx", "leading_dims"])
    def test_decode_edge_cases(case):
        B, k, n, d = 40, 6, 11, 45
        idx, vals, W, b, gout = _make(
            B, k, n, d, torch.float32, seed=7, repeat=case == "repeat", noncontig=case == "noncontig",
            hot=case == "hot", bias=case != "no_bias",
        )  # fmt: skip
        if case == "int32_idx":
            idx = idx.int()
        if case == "leading_dims":  # [2, B/2, k] batches decode to [2, B/2, d]
            idx, vals, gout = (
                idx.reshape(2, B // 2, k),
                vals.reshape(2, B // 2, k),
                gout.reshape(2, B // 2, d),
            )
        out, grads = _decode_and_grads(idx, vals, W, b, gout, lambda i, v, w, bb: sparse_decode(i, v, w, bb, "triton"))
        ref, ref_grads = _decode_and_grads(idx.long(), vals, W, b, gout, sparse_decode_naive)
        _close(out, ref, torch.float32, "out")
        assert len(grads) == len(ref_grads)
        for got, exp in zip(grads, ref_grads):
            _close(got, exp, torch.float32, "grad")

    @pytest.mark.parametrize("method", ["sorted", "atomic"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
    def test_grad_rows_methods_match_index_add(method, dtype):
        B, k, n, d = 24, 5, 9, 70
        idx, vals, _, _, gout = _make(B, k, n, d, dtype, seed=3, repeat=True, hot=True)
        got, bias = td.grad_rows(idx, vals, gout, n, method=method, with_bias=True)
        exp = torch.zeros(n, d, dtype=torch.float64, device=DEVICE)
        exp.index_add_(0, idx.reshape(-1), (vals.double()[:, :, None] * gout.double()[:, None, :]).reshape(-1, d))
        exp_b = torch.zeros(n, dtype=torch.float64, device=DEVICE).index_add_(
            0, idx.reshape(-1), vals.double().reshape(-1)
        )
        torch.testing.assert_close(got.double(), exp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bias.double(), exp_b, atol=1e-5, rtol=1e-5)
        unused = torch.ones(n, dtype=torch.bool, device=DEVICE)
        unused[idx.reshape(-1)] = False
        assert bool((got[unused] == 0).all()), "latents with no pairs must get an exact zero row"

    def test_sorted_grad_w_is_bitwise_deterministic():
        idx, vals, _, _, gout = _make(64, 8, 7, 33, torch.float32, seed=5, hot=True)
        first = td.grad_rows(idx, vals, gout, 7, method="sorted")[0]
        for _ in range(2):
            assert torch.equal(td.grad_rows(idx, vals, gout, 7, method="sorted")[0], first)

    def test_sort_pairs_csr():
        idx = torch.tensor([[2, 0, 2], [1, 2, 0]], device=DEVICE)
        order, rowptr, schedule = td.sort_pairs(idx, 4)
        assert rowptr.tolist() == [0, 2, 3, 6, 6]
        assert order.tolist() == [1, 5, 3, 0, 2, 4]  # flat b*k+j, by latent, stable within a latent
        assert schedule.tolist()[0] == 2 and schedule.tolist()[-1] == 3  # heaviest first, empty last

    ENC_SHAPES = {
        "B1_k1": (1, 8, 6, 1),
        "k_eq_n": (5, 12, 7, 7),
        "d_not_multiple": (9, 37, 40, 5),
        "wide": (6, 300, 20, 4),
    }

    @pytest.mark.parametrize("name", list(ENC_SHAPES))
    @pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "noncontig"])
    def test_topk_encode_matches_dense(name, noncontig):
        B, d_in, n, k = ENC_SHAPES[name]
        g = torch.Generator().manual_seed(B * 100 + n)
        if noncontig:  # x as a strided slice, W_enc stored [n, d_in] (nn.Linear layout) and transposed
            x = torch.randn(B, 2 * d_in, generator=g)[:, ::2]
            W = torch.randn(n, d_in, generator=g).t()
        else:
            x = torch.randn(B, d_in, generator=g)
            W = torch.randn(d_in, n, generator=g)
        bias = torch.randn(n, generator=g)
        gv = torch.randn(B, k, generator=g)
        x, W, bias, gv = (t.to(DEVICE) for t in (x, W, bias, gv))

        def run(fn):
            leaves = [t.detach().clone().requires_grad_(True) for t in (x, W, bias)]
            vals, idx = fn(*leaves, k)
            return vals, idx, torch.autograd.grad(vals, leaves, gv)

        vals, idx, grads = run(lambda a, w, bb, kk: topk_encode(a, w, bb, kk, backend="triton"))
        rvals, ridx, rgrads = run(topk_encode_dense)
        assert torch.equal(idx, ridx)
        _close(vals, rvals, torch.float32, "vals")
        assert bool((vals == 0).any()) or k < n, "ReLU zeros expected when k = n"
        for what, got, exp in zip(("grad x", "grad W_enc", "grad b_enc"), grads, rgrads):
            _close(got, exp, torch.float32, what)

    def test_topk_training_triton_path_matches_dense_path(monkeypatch):
        """A TopK dictionary trained through the Triton decode (forward + backward, incl. AuxK),
        chosen by TrainConfig.use_kernels, follows the dense z @ W_dec path's loss curve from the
        same seed. Kernel launches are counted so an ignored setting cannot pass vacuously."""
        from saekit.config import DictionaryConfig, TrainConfig
        from saekit.training.loop import Trainer

        launches = {"n": 0}
        real_forward = td.decode_forward

        def counting_forward(*args, **kwargs):
            launches["n"] += 1
            return real_forward(*args, **kwargs)

        monkeypatch.setattr(td, "decode_forward", counting_forward)

        g = torch.Generator().manual_seed(0)
        feats = torch.nn.functional.normalize(torch.randn(24, 8, generator=g), dim=-1)
        pick = torch.randint(0, 24, (256, 2), generator=g)
        X = (torch.rand(256, 2, 1, generator=g) + 0.5).mul(feats[pick]).sum(1)

        def curve(backend):
            cfg = DictionaryConfig(kind="topk", d_in=8, n_latents=32, k=2, seed=0)
            tcfg = TrainConfig(
                batch_size=16, total_tokens=16 * 10, lr=3e-3, lr_warmup_steps=2, log_every=1, seed=0,
                dead_tokens=32, use_kernels=backend, device=str(DEVICE),
            )  # fmt: skip
            trainer = Trainer(cfg, X, tcfg, progress=False)
            trainer.fit()
            return torch.tensor([r["loss"] for r in trainer.metrics.records])

        triton_losses = curve("triton")
        assert launches["n"] >= 10, "the Triton decode should run on every step"
        launches["n"] = 0
        dense_losses = curve("dense")
        assert launches["n"] == 0
        assert len(triton_losses) == 10 and triton_losses[-1] < triton_losses[0]
        torch.testing.assert_close(triton_losses, dense_losses, rtol=1e-3, atol=1e-5)

    @pytest.mark.parametrize("shape", [(5, 12, 7, 7), (9, 37, 130, 3)], ids=["k_eq_n", "splits"])
    def test_fused_topk_encoder_matches_dense(shape):
        """The fused encoder picks the same latents with the same values, and (through the
        shared sparse backward) gives the same gradients; the loss weights each latent by a fixed
        number so it does not depend on the order of the k entries in a row."""
        from saekit.kernels.fused_encoder import fused_topk_forward

        B, d_in, n, k = shape
        g = torch.Generator().manual_seed(n)
        x, W, bias = (torch.randn(*s, generator=g).to(DEVICE) for s in ((B, d_in), (d_in, n), (n,)))
        per_latent = torch.randn(n, generator=g).to(DEVICE)
        # several splits of the latents are merged when there are few row blocks
        pre_vals, pre_idx = fused_topk_forward(x, W, bias, k, programs=4)
        ref = torch.addmm(bias, x, W).topk(k, dim=1)
        order = pre_vals.argsort(dim=1, descending=True)
        assert torch.equal(pre_idx.gather(1, order), ref.indices)
        _close(pre_vals.gather(1, order), ref.values, torch.float32, "pre-activations")

        def run(fused):
            leaves = [t.clone().requires_grad_(True) for t in (x, W, bias)]
            if fused:
                vals, idx = topk_encode(*leaves, k, backend="triton", fused=True)
            else:
                vals, idx = topk_encode_dense(*leaves, k)
            loss = (vals * per_latent[idx]).sum()
            return torch.autograd.grad(loss, leaves)

        for what, got, exp in zip(("grad x", "grad W_enc", "grad b_enc"), run(True), run(False)):
            _close(got, exp, torch.float32, what)
