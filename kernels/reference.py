"""Plain-torch references for the sparse kernels; also the fast path on CPU.

Every function here is the ground truth the Triton kernels are tested against, and what
`saekit.kernels.sparse_decode` runs on CPU tensors. None of them builds a dense [B, n] tensor.
Large batches are processed in row chunks so the gathered [chunk, k, d] rows stay bounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows per chunk are chosen so a gathered [rows, k, d] block holds at most this many elements
# (2^24 fp32 = 64 MiB): big enough to keep BLAS busy, small enough for a laptop.
_CHUNK_ELEMENTS = 1 << 24


def out_dtype(vals: torch.Tensor, W_dec: torch.Tensor) -> torch.dtype:
    """Output dtype of a sparse decode: what ``z @ W_dec`` with a dense z of vals' dtype gives."""
    return torch.promote_types(vals.dtype, W_dec.dtype)


def _row_chunks(B: int, k: int, d: int):
    rows = max(1, _CHUNK_ELEMENTS // max(1, k * d))
    for start in range(0, B, rows):
        yield start, min(B, start + rows)


def decode_forward(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """x_hat[b] = sum_j vals[b, j] * W_dec[idx[b, j]] in fp32 (no bias). Returns fp32 [B, d]."""
    B, k = idx.shape
    d = W_dec.shape[1]
    if idx.numel() == 0:  # k = 0 or an empty batch: embedding_bag rejects both
        return torch.zeros(B, d, dtype=torch.float32, device=W_dec.device)
    if W_dec.dtype == torch.float32 and vals.dtype == torch.float32:
        # embedding_bag with per-sample weights is a fused gather-scale-sum: no [B, k, d] temporary.
        return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")
    out = torch.empty(B, d, dtype=torch.float32, device=W_dec.device)
    for s, e in _row_chunks(B, k, d):
        rows = W_dec[idx[s:e]].float()  # [c, k, d]; upcast only the gathered rows, never all of W_dec
        out[s:e] = torch.bmm(vals[s:e].float().unsqueeze(1), rows).squeeze(1)
    return out


def decode_grad_vals(idx: torch.Tensor, W_dec: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """grad_vals[b, j] = <grad_out[b], W_dec[idx[b, j]]> in fp32: a gather, never grad_out @ W_decᵀ."""
    B, k = idx.shape
    d = W_dec.shape[1]
    g = grad_out.float()
    out = torch.empty(B, k, dtype=torch.float32, device=W_dec.device)
    for s, e in _row_chunks(B, k, d):
        rows = W_dec[idx[s:e]].float()  # [c, k, d]
        out[s:e] = torch.bmm(rows, g[s:e].unsqueeze(2)).squeeze(2)
    return out


def decode_grad_W(idx: torch.Tensor, vals: torch.Tensor, grad_out: torch.Tensor, n: int) -> torch.Tensor:
    """grad_W_dec[i] = sum over (b, j) with idx[b, j] = i of vals[b, j] * grad_out[b], fp32 [n, d]."""
    B, k = idx.shape
    d = grad_out.shape[1]
    g = grad_out.float()
    v = vals.float()
    out = torch.zeros(n, d, dtype=torch.float32, device=grad_out.device)
    for s, e in _row_chunks(B, k, d):
        contrib = (v[s:e].unsqueeze(2) * g[s:e].unsqueeze(1)).reshape(-1, d)  # [c*k, d]
        out.index_add_(0, idx[s:e].reshape(-1), contrib)
    return out


class SparseDecodeTorch(torch.autograd.Function):
    """Autograd wrapper of the reference: sparse forward, sparse backward (gather + index_add)."""

    @staticmethod
    def forward(ctx, idx, vals, W_dec, b_dec):  # type: ignore[override]
        ctx.save_for_backward(idx, vals, W_dec)
        ctx.has_bias = b_dec is not None
        ctx.b_dtype = b_dec.dtype if b_dec is not None else None
        out = decode_forward(idx, vals, W_dec)
        if b_dec is not None:
            out += b_dec.float()
        return out.to(out_dtype(vals, W_dec))

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        idx, vals, W_dec = ctx.saved_tensors
        grad_vals = grad_W = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_vals = decode_grad_vals(idx, W_dec, grad_out).to(vals.dtype)
        if ctx.needs_input_grad[2]:
            grad_W = decode_grad_W(idx, vals, grad_out, W_dec.shape[0]).to(W_dec.dtype)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = grad_out.float().sum(0).to(ctx.b_dtype)
        return None, grad_vals, grad_W, grad_b


def sparse_decode_naive(
    idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None = None
) -> torch.Tensor:
    """The definition, through plain autograd, in fp32: test ground truth only (builds [B, k, d])."""
    rows = W_dec.float()[idx]  # [..., k, d]
    out = (vals.float().unsqueeze(-1) * rows).sum(-2)
    if b_dec is not None:
        out = out + b_dec.float()
    return out


def dense_decode(
    idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None = None
) -> torch.Tensor:
    """The dense baseline: scatter vals into a [B, n] z and multiply by W_dec (what SAELens does)."""
    z = torch.zeros(idx.shape[0], W_dec.shape[0], dtype=vals.dtype, device=vals.device)
    z = z.scatter_add(1, idx, vals)  # scatter_add so repeated indices sum, as in the sparse path
    out = z @ W_dec
    return out + b_dec if b_dec is not None else out


def encoder_backward(
    x: torch.Tensor, idx: torch.Tensor, grad_vals: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse top-k encoder backward: grads of W_enc [d_in, n] and b_enc [n] from k grads per row.

    With pre = x @ W_enc + b_enc and vals = act(pre)[idx], only pre[b, idx[b, j]] receive a
    gradient g[b, j] (the caller folds act' into grad_vals). Then
    grad_W_enc[:, i] = sum_{(b,j): idx=i} g[b,j] * x[b] and grad_b_enc[i] = sum g[b,j] — the
    same sparseᵀ×dense product as the decoder's grad_W, returned transposed to [d_in, n].
    """
    grad_W_t = decode_grad_W(idx, grad_vals, x, n)  # [n, d_in]
    grad_b = torch.zeros(n, dtype=torch.float32, device=x.device)
    grad_b.index_add_(0, idx.reshape(-1), grad_vals.float().reshape(-1))
    return grad_W_t.t(), grad_b
