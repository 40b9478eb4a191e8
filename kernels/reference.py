"""Plain-torch references for the sparse kernels; also the fast path on CPU.

Every function here is the ground truth the Triton kernels are tested against, and what
`saekit.kernels.sparse_decode` runs on CPU tensors. None of them builds a dense [B, n] tensor.
Large batches are processed in row chunks so the gathered [chunk, k, d] rows stay bounded.
"""

from __future__ import annotations

import warnings

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
        if W_dec.is_contiguous():
            # embedding_bag with per-sample weights is a fused gather-scale-sum: no [B, k, d] temporary.
            return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")
        # A strided W (e.g. W_encᵀ in the encoder backward): embedding_bag would copy all of it;
        # the code as a CSR matrix [B, n] times W reads only the rows it needs (4× faster).
        crow = torch.arange(0, B * k + 1, k, device=idx.device)
        return _csr(crow, idx.reshape(-1), vals.reshape(-1), (B, W_dec.shape[0])) @ W_dec
    out = torch.empty(B, d, dtype=torch.float32, device=W_dec.device)
    for s, e in _row_chunks(B, k, d):
        rows = W_dec[idx[s:e]].float()  # [c, k, d]; upcast only the gathered rows, never all of W_dec
        out[s:e] = torch.bmm(vals[s:e].float().unsqueeze(1), rows).squeeze(1)
    return out


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": true, and not the user's concern
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def decode_grad_vals(idx: torch.Tensor, W_dec: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """grad_vals[b, j] = <grad_out[b], W_dec[idx[b, j]]> in fp32: a gather, never grad_out @ W_decᵀ."""
    B, k = idx.shape
    n, d = W_dec.shape
    if W_dec.dtype in (torch.float32, torch.float64) and idx.numel() > 0:
        # A sampled dense×dense product (SDDMM): (grad_out @ W_decᵀ) evaluated only at the k
        # stored positions of each row, read straight from W_dec (no [B, k, d] copy).
        crow = torch.arange(0, B * k + 1, k, device=idx.device)
        zeros = torch.zeros(B * k, dtype=W_dec.dtype, device=idx.device)
        pattern = _csr(crow, idx.reshape(-1), zeros, (B, n))
        out = torch.sparse.sampled_addmm(pattern, grad_out.to(W_dec.dtype), W_dec.t(), beta=0.0)
        return out.values().reshape(B, k).float()
    g = grad_out.float()
    out = torch.empty(B, k, dtype=torch.float32, device=W_dec.device)
    for s, e in _row_chunks(B, k, d):  # half precision (no SDDMM for it): gather rows, upcast
        rows = W_dec[idx[s:e]].float()  # [c, k, d]
        out[s:e] = torch.bmm(rows, g[s:e].unsqueeze(2)).squeeze(2)
    return out


def sort_pairs_csr(idx: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The transposed code restricted to the latents that occur: (latents [U], S [U, B] CSR).

    S[u, b] = Σ_j vals[b, j] over idx[b, j] = latents[u]. The (b, j) pairs are sorted by latent
    once (stable, so the result is the same every run).
    """
    B, k = idx.shape
    flat = idx.reshape(-1)
    sorted_ids, order = torch.sort(flat, stable=True)
    latents, counts = torch.unique_consecutive(sorted_ids, return_counts=True)
    crow = torch.zeros(latents.numel() + 1, dtype=torch.int64, device=idx.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return latents, _csr(crow, order // k, vals.reshape(-1)[order].float(), (latents.numel(), B))


def decode_grad_W(idx: torch.Tensor, vals: torch.Tensor, grad_out: torch.Tensor, n: int) -> torch.Tensor:
    """grad_W_dec[i] = sum over (b, j) with idx[b, j] = i of vals[b, j] * grad_out[b], fp32 [n, d].

    A sparseᵀ × dense product: the pairs sorted by latent form a CSR matrix [U, B] over the U
    latents that occur, multiplied by grad_out [B, d] (MKL / cuSPARSE), then copied into a zeroed
    [n, d]. Only U rows are computed and written (the zeros of an untouched CPU page cost nothing).
    """
    B, k = idx.shape
    d = grad_out.shape[1]
    out = torch.zeros(n, d, dtype=torch.float32, device=grad_out.device)
    if idx.numel() == 0:
        return out
    latents, S = sort_pairs_csr(idx, vals)
    return out.index_copy_(0, latents, S @ grad_out.float())


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
    dtype = out_dtype(vals, W_dec)
    z = torch.zeros(idx.shape[0], W_dec.shape[0], dtype=dtype, device=vals.device)
    z = z.scatter_add(1, idx, vals.to(dtype))  # scatter_add so repeated indices sum, as in the sparse path
    out = z @ W_dec.to(dtype)
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


def pairs_grad_rows(rows: torch.Tensor, cols: torch.Tensor, g: torch.Tensor, dense: torch.Tensor, n: int) -> torch.Tensor:
    """out[i] = Σ_{p: cols[p] = i} g[p] · dense[rows[p]], fp32 [n, d]: ``decode_grad_W`` for a
    code with any number of entries per row (batch top-k), pairs sorted by latent into a CSR."""
    out = torch.zeros(n, dense.shape[1], dtype=torch.float32, device=dense.device)
    if cols.numel() == 0:
        return out
    sorted_ids, order = torch.sort(cols, stable=True)
    latents, counts = torch.unique_consecutive(sorted_ids, return_counts=True)
    crow = torch.zeros(latents.numel() + 1, dtype=torch.int64, device=cols.device)
    torch.cumsum(counts, 0, out=crow[1:])
    S = _csr(crow, rows[order], g[order].float(), (latents.numel(), dense.shape[0]))
    return out.index_copy_(0, latents, S @ dense.float())
