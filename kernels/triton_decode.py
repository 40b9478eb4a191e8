"""Triton kernels for sparse decode (forward and backward) and the sparse encoder backward.

All kernels load their inputs in whatever dtype they come (fp32, bf16, fp16), convert to fp32
right after the load (the Triton CPU interpreter cannot do bf16 arithmetic, and fp32 accumulation
is what we want anyway) and take explicit strides, so non-contiguous views need no copy.

Kernels
-------
- ``_decode_fwd``: one program per (row b, block of d): gathers the k rows W[idx[b, :]] in tiles
  of [BLOCK_K, BLOCK_D], scales by vals and sums. Reads B·k·d + B·d·(bias) elements, writes B·d.
- ``_decode_grad_vals``: one program per (row b, block of k): grad_vals[b, j] = <g[b], W[idx[b, j]]>,
  looping over d. Reads B·k·d + B·d, writes B·k. Never forms g @ Wᵀ ([B, n]).
- ``_grad_rows_sorted``: the sparseᵀ×dense product out[i] = Σ_{(b,j): idx[b,j]=i} v[b,j] · g[b].
  The (b, j) pairs are sorted by latent once (CSR: ``order`` and ``rowptr``), then one program per
  (latent row, block of d) sums its pairs and writes its row exactly once: no atomics, the same
  bytes every run. Programs are launched heaviest latent first so a hot latent does not finish last.
  Also writes Σ v[b, j] per latent (the encoder's grad b_enc) when asked.
- ``_grad_rows_atomic``: the same product with one program per (row b, block of d) doing
  ``atomic_add`` into an fp32 buffer: no sort, but not deterministic on GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

GRAD_W_METHODS = ("sorted", "atomic")
# Default: sorted. It is deterministic (DESIGN: same config + seed → same bytes) and is the
# design sparsify adopted for its decoder backward (xformers' reverse-index embedding_bag)
# over OpenAI's atomic kernel. benchmarks/kernels/bench_decode.py times both on a GPU.
DEFAULT_GRAD_W_METHOD = "sorted"


def _block(n: int, cap: int, floor: int = 16) -> int:
    return max(floor, min(cap, triton.next_power_of_2(max(1, n))))


@triton.jit
def _decode_fwd(
    idx_ptr, vals_ptr, w_ptr, b_ptr, out_ptr,
    K, D,
    s_ib, s_ik, s_vb, s_vk, s_wn, s_wd, s_bd, s_ob, s_od,
    HAS_BIAS: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        ids = tl.load(idx_ptr + row * s_ib + offs_k * s_ik, mask=mask_k, other=0).to(tl.int64)
        v = tl.load(vals_ptr + row * s_vb + offs_k * s_vk, mask=mask_k, other=0).to(tl.float32)
        w = tl.load(
            w_ptr + ids[:, None] * s_wn + offs_d[None, :] * s_wd,
            mask=mask_k[:, None] & mask_d[None, :],
            other=0,
        ).to(tl.float32)
        acc += tl.sum(w * v[:, None], axis=0)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_d * s_bd, mask=mask_d, other=0).to(tl.float32)
    tl.store(out_ptr + row * s_ob + offs_d * s_od, acc, mask=mask_d)


@triton.jit
def _decode_grad_vals(
    idx_ptr, w_ptr, g_ptr, out_ptr,
    K, D,
    s_ib, s_ik, s_wn, s_wd, s_gb, s_gd, s_ob, s_ok,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    ids = tl.load(idx_ptr + row * s_ib + offs_k * s_ik, mask=mask_k, other=0).to(tl.int64)
    acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        g = tl.load(g_ptr + row * s_gb + offs_d * s_gd, mask=mask_d, other=0).to(tl.float32)
        w = tl.load(
            w_ptr + ids[:, None] * s_wn + offs_d[None, :] * s_wd,
            mask=mask_k[:, None] & mask_d[None, :],
            other=0,
        ).to(tl.float32)
        acc += tl.sum(w * g[None, :], axis=1)
    tl.store(out_ptr + row * s_ob + offs_k * s_ok, acc, mask=mask_k)


@triton.jit
def _grad_rows_sorted(
    order_ptr, rowptr_ptr, sched_ptr, v_ptr, g_ptr, out_ptr, bias_ptr,
    K, D,
    s_vb, s_vk, s_gb, s_gd, s_on, s_od,
    WRITE_BIAS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    latent = tl.load(sched_ptr + tl.program_id(0)).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    start = tl.load(rowptr_ptr + latent)
    end = tl.load(rowptr_ptr + latent + 1)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    vsum = tl.zeros([BLOCK_P], dtype=tl.float32)
    for p0 in range(start, end, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask_p = offs_p < end
        pair = tl.load(order_ptr + offs_p, mask=mask_p, other=0).to(tl.int64)
        b = pair // K
        j = pair % K
        v = tl.load(v_ptr + b * s_vb + j * s_vk, mask=mask_p, other=0).to(tl.float32)
        g = tl.load(
            g_ptr + b[:, None] * s_gb + offs_d[None, :] * s_gd,
            mask=mask_p[:, None] & mask_d[None, :],
            other=0,
        ).to(tl.float32)
        acc += tl.sum(g * v[:, None], axis=0)
        vsum += v
    tl.store(out_ptr + latent * s_on + offs_d * s_od, acc, mask=mask_d)
    if WRITE_BIAS:
        if pid_d == 0:
            tl.store(bias_ptr + latent, tl.sum(vsum, axis=0))


@triton.jit
def _grad_rows_atomic(
    idx_ptr, v_ptr, g_ptr, out_ptr,
    K, D,
    s_ib, s_ik, s_vb, s_vk, s_gb, s_gd, s_on, s_od,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    g = tl.load(g_ptr + row * s_gb + offs_d * s_gd, mask=mask_d, other=0).to(tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        ids = tl.load(idx_ptr + row * s_ib + offs_k * s_ik, mask=mask_k, other=0).to(tl.int64)
        v = tl.load(v_ptr + row * s_vb + offs_k * s_vk, mask=mask_k, other=0).to(tl.float32)
        tl.atomic_add(
            out_ptr + ids[:, None] * s_on + offs_d[None, :] * s_od,
            v[:, None] * g[None, :],
            mask=mask_k[:, None] & mask_d[None, :],
        )


# ---------------------------------------------------------------------------------------------
# Host wrappers (shapes: idx, vals [B, k]; W [n, d]; g [B, d]). All return fp32 results.


def decode_forward(
    idx: torch.Tensor, vals: torch.Tensor, W: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """fp32 [B, d] = Σ_j vals[:, j] · W[idx[:, j]] (+ bias)."""
    B, K = idx.shape
    D = W.shape[1]
    out = torch.empty(B, D, dtype=torch.float32, device=W.device)
    if B == 0:
        return out
    BLOCK_D = _block(D, 256)
    BLOCK_K = _block(K, 16, floor=1)
    b = bias if bias is not None else out  # placeholder pointer, never read when HAS_BIAS=False
    _decode_fwd[(B, triton.cdiv(D, BLOCK_D))](
        idx, vals, W, b, out, K, D,
        idx.stride(0), idx.stride(1), vals.stride(0), vals.stride(1), W.stride(0), W.stride(1),
        b.stride(0) if bias is not None else 0, out.stride(0), out.stride(1),
        HAS_BIAS=bias is not None, BLOCK_K=BLOCK_K, BLOCK_D=BLOCK_D,
    )  # fmt: skip
    return out


def decode_grad_vals(idx: torch.Tensor, W: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """fp32 [B, k]: grad_vals[b, j] = <g[b], W[idx[b, j]]>."""
    B, K = idx.shape
    D = W.shape[1]
    out = torch.empty(B, K, dtype=torch.float32, device=W.device)
    if B == 0:
        return out
    BLOCK_K = _block(K, 16, floor=1)
    BLOCK_D = _block(D, 256)
    _decode_grad_vals[(B, triton.cdiv(K, BLOCK_K))](
        idx, W, g, out, K, D,
        idx.stride(0), idx.stride(1), W.stride(0), W.stride(1), g.stride(0), g.stride(1),
        out.stride(0), out.stride(1),
        BLOCK_K=BLOCK_K, BLOCK_D=BLOCK_D,
    )  # fmt: skip
    return out


def sort_pairs(idx: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR of the (b, j) pairs by latent: (order, rowptr, schedule).

    ``order[p]`` is a flat pair index b·k + j, sorted by latent (stable, so the summation order and
    hence the result are the same every run); latent i owns order[rowptr[i]:rowptr[i+1]];
    ``schedule`` lists latents heaviest first (the launch order of the per-latent programs).
    """
    flat = idx.reshape(-1)
    sorted_ids, order = torch.sort(flat, stable=True)
    rowptr = torch.searchsorted(sorted_ids, torch.arange(n + 1, device=idx.device, dtype=sorted_ids.dtype))
    counts = rowptr[1:] - rowptr[:-1]
    schedule = torch.sort(counts, descending=True, stable=True).indices
    return order, rowptr, schedule


def grad_rows(
    idx: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    n: int,
    method: str = DEFAULT_GRAD_W_METHOD,
    with_bias: bool = False,
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 [n, d]: out[i] = Σ_{(b,j): idx[b,j]=i} v[b,j] · g[b]; plus Σ v per latent if with_bias.

    ``pairs`` may pass a precomputed ``sort_pairs(idx, n)`` (sort once per step, use twice).
    """
    if method not in GRAD_W_METHODS:
        raise ValueError(f"method must be one of {', '.join(GRAD_W_METHODS)}, got {method!r}.")
    B, K = idx.shape
    D = g.shape[1]
    BLOCK_D = _block(D, 256)
    if method == "atomic":
        out = torch.zeros(n, D, dtype=torch.float32, device=g.device)
        if B > 0:
            BLOCK_K = _block(K, 16, floor=1)
            _grad_rows_atomic[(B, triton.cdiv(D, BLOCK_D))](
                idx, v, g, out, K, D,
                idx.stride(0), idx.stride(1), v.stride(0), v.stride(1), g.stride(0), g.stride(1),
                out.stride(0), out.stride(1),
                BLOCK_K=BLOCK_K, BLOCK_D=BLOCK_D,
            )  # fmt: skip
        bias = None
        if with_bias:
            bias = torch.zeros(n, dtype=torch.float32, device=g.device)
            bias.index_add_(0, idx.reshape(-1), v.float().reshape(-1))
        return out, bias
    order, rowptr, schedule = pairs if pairs is not None else sort_pairs(idx, n)
    out = torch.empty(n, D, dtype=torch.float32, device=g.device)
    bias = torch.empty(n, dtype=torch.float32, device=g.device) if with_bias else None
    _grad_rows_sorted[(n, triton.cdiv(D, BLOCK_D))](
        order, rowptr, schedule, v, g, out, bias if bias is not None else out, K, D,
        v.stride(0), v.stride(1), g.stride(0), g.stride(1), out.stride(0), out.stride(1),
        WRITE_BIAS=with_bias, BLOCK_P=16, BLOCK_D=BLOCK_D,
    )  # fmt: skip
    return out, bias


class SparseDecodeTriton(torch.autograd.Function):
    """Triton sparse decode: forward gather-sum, backward gather (vals) + sorted rows (W_dec)."""

    @staticmethod
    def forward(ctx, idx, vals, W_dec, b_dec, grad_w_method=DEFAULT_GRAD_W_METHOD):  # type: ignore[override]
        ctx.save_for_backward(idx, vals, W_dec)
        ctx.has_bias = b_dec is not None
        ctx.b_dtype = b_dec.dtype if b_dec is not None else None
        ctx.grad_w_method = grad_w_method
        out = decode_forward(idx, vals, W_dec, b_dec)
        return out.to(torch.promote_types(vals.dtype, W_dec.dtype))

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        idx, vals, W_dec = ctx.saved_tensors
        grad_vals = grad_W = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_vals = decode_grad_vals(idx, W_dec, grad_out).to(vals.dtype)
        if ctx.needs_input_grad[2]:
            grad_W = grad_rows(idx, vals, grad_out, W_dec.shape[0], ctx.grad_w_method)[0].to(W_dec.dtype)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = grad_out.float().sum(0).to(ctx.b_dtype)
        return None, grad_vals, grad_W, grad_b, None
