"""Time one implementation at one shape: forward + backward, median time and peak memory.

``--op decode``: the sparse decoder, out = Σ_j vals[:, j] · W_dec[idx[:, j]] (grads of vals, W_dec).
``--op encode``: the top-k encoder, (vals, idx) = topk(x @ W_enc + b_enc) (grads of W_enc, b_enc).

Run by bench_decode.py / bench_encoder.py in a fresh process per measurement (so CPU peak RSS is
this measurement's own), with the project's .venv for saekit's implementations and with the peer
venv for sparsify. It imports neither saekit nor sparsify at module level, only what it measures.

Prints one JSON object: {"op", "impl", "B", "n", "k", "d", "dtype", "device", "ms" (median of reps),
"ms_all", "peak_mb" (extra memory over the inputs: CUDA max_memory_allocated, or the growth of
the process's peak RSS on CPU), "error" (if it could not run)}.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch


def make_encoder(name: str):
    """fn(x, W_enc, b_enc, k) -> (vals, idx) [B, k], differentiable in W_enc and b_enc."""
    from saekit.kernels import topk_encode

    backend = name.split("-", 1)[1]  # saekit-dense | saekit-torch | saekit-triton | saekit-triton-fused
    fused = backend.endswith("-fused")
    backend = backend.removesuffix("-fused")
    return lambda x, W, b, k: topk_encode(x, W, b, k, backend=backend, fused=fused)


def make_impl(name: str):
    """fn(idx, vals, W) -> out [B, d], differentiable in vals and W."""
    if name == "dense":  # SAELens-style: scatter the k codes into a dense [B, n] z, then z @ W_dec

        def dense(idx, vals, W):
            z = torch.zeros(idx.shape[0], W.shape[0], dtype=vals.dtype, device=vals.device)
            return z.scatter_add(1, idx, vals) @ W

        return dense
    if name.startswith("saekit-"):
        from saekit.kernels import sparse_decode

        backend = name.split("-", 1)[1]
        if backend == "triton-atomic":
            from saekit.kernels.triton_decode import SparseDecodeTriton

            return lambda idx, vals, W: SparseDecodeTriton.apply(idx, vals, W, None, "atomic")
        return lambda idx, vals, W: sparse_decode(idx, vals, W, None, backend=backend)
    if name.startswith("sparsify-"):
        import os

        if name == "sparsify-eager":
            os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
        from sparsify.utils import decoder_impl

        # sparsify keeps W_dec as [n, d] and calls decoder_impl(idx, acts, W_dec.mT)
        return lambda idx, vals, W: decoder_impl(idx, vals, W.mT)
    raise SystemExit(f"unknown implementation {name!r}")


def peak_rss_mb() -> float:
    """This process's own peak RSS: Linux's VmHWM. ru_maxrss of a process started by subprocess (vfork)
    starts at its parent's peak, which would hide a worker's growth below the driver's."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # KiB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--op", choices=("decode", "encode"), default="decode")
    p.add_argument("--impl", required=True)
    p.add_argument("--B", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    rec = {k: getattr(a, k) for k in ("op", "impl", "B", "n", "k", "d", "dtype", "device")}
    dev = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    try:
        if a.op == "decode":
            fn = make_impl(a.impl)
            W = (torch.randn(a.n, a.d, device=dev) / a.d**0.5).to(dtype).requires_grad_(True)
            idx = torch.randint(0, a.n, (a.B, a.k), device=dev)
            vals = torch.rand(a.B, a.k, device=dev).to(dtype).requires_grad_(True)
            gout = torch.randn(a.B, a.d, device=dev).to(dtype)
            params = [W, vals]

            def once():
                for t in params:
                    t.grad = None
                fn(idx, vals, W).backward(gout)

        else:
            enc = make_encoder(a.impl)
            x = torch.randn(a.B, a.d, device=dev).to(dtype)
            W = (torch.randn(a.d, a.n, device=dev) / a.d**0.5).to(dtype).requires_grad_(True)
            b = torch.zeros(a.n, device=dev).to(dtype).requires_grad_(True)
            gvals = torch.randn(a.B, a.k, device=dev).to(dtype)
            params = [W, b]

            def once():
                for t in params:
                    t.grad = None
                enc(x, W, b, a.k)[0].backward(gvals)

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize()

        rss_base = peak_rss_mb()  # CPU: the inputs are resident, nothing has run yet
        for _ in range(a.warmup):
            once()
        sync()
        if dev.type == "cuda":
            for t in params:
                t.grad = None
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(a.reps):
            sync()
            t0 = time.perf_counter()
            once()
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        if dev.type == "cuda":
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peak = peak_rss_mb() - rss_base  # peak RSS growth over warm-up and timed reps
        rec.update(ms=statistics.median(times), ms_min=min(times), ms_all=times, peak_mb=peak)
    except Exception as e:  # recorded, not hidden: the driver prints it in the table
        rec.update(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200])
    print(json.dumps(rec))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
