"""Top-k encoder with a sparse backward: no dense [B, n] gradient, no dense x.T @ grad_pre.

Forward: ``pre = x @ W_enc + b_enc`` (one dense matmul), then the k largest pre-activations per
row and a ReLU on them (the SAELens / Gao et al. order: top-k, then ReLU). Only ``(vals, idx)``
[B, k] are kept for backward.

Backward: only the k selected pre-activations per row receive a gradient
``g[b, j] = grad_vals[b, j] · 1[vals[b, j] > 0]``. Then

- ``grad_W_enc[:, i] = Σ_{(b,j): idx[b,j]=i} g[b,j] · x[b]``   (sparseᵀ × dense, O(B·k·d_in))
- ``grad_b_enc[i]   = Σ_{(b,j): idx[b,j]=i} g[b,j]``
- ``grad_x[b]       = Σ_j g[b,j] · W_enc[:, idx[b,j]]``           (a sparse decode with W_encᵀ)

instead of the dense ``x.T @ grad_pre`` (O(B·n·d_in)). The Triton backend computes grad_W_enc
and grad_b_enc in one sorted-by-latent pass (deterministic); the torch backend uses index_add.
"""

from __future__ import annotations

import torch

from . import reference


class TopKEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_enc, b_enc, k, backend, fused=False):  # type: ignore[override]
        if fused and backend == "triton":
            from .fused_encoder import fused_topk_forward

            pre_vals, idx = fused_topk_forward(x, W_enc, b_enc, k)
            vals = torch.relu(pre_vals).to(torch.promote_types(x.dtype, W_enc.dtype))
        else:
            vals, idx = _topk_of_linear(x, W_enc, b_enc, k)
        ctx.save_for_backward(x, W_enc, idx, vals)
        ctx.backend = backend
        ctx.has_bias = b_enc is not None
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, grad_vals, _grad_idx):  # type: ignore[override]
        x, W_enc, idx, vals = ctx.saved_tensors
        n = W_enc.shape[1]
        g = grad_vals * (vals > 0).to(grad_vals.dtype)  # ReLU' on the selected entries
        grad_x = grad_W = grad_b = None
        need_x, need_W, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if ctx.backend == "triton":
            from . import triton_decode as td

            if need_x:
                grad_x = td.decode_forward(idx, g, W_enc.t(), None).to(x.dtype)
            if need_W or (need_b and ctx.has_bias):
                gw_t, gb = td.grad_rows(idx, g, x, n, with_bias=ctx.has_bias)
                grad_W = gw_t.t().to(W_enc.dtype) if need_W else None
                grad_b = gb.to(W_enc.dtype) if need_b and ctx.has_bias else None
        else:
            if need_x:
                grad_x = reference.decode_forward(idx, g, W_enc.t()).to(x.dtype)
            if need_W or (need_b and ctx.has_bias):
                gw_t, gb = reference.encoder_backward(x, idx, g, n)
                grad_W = gw_t.to(W_enc.dtype) if need_W else None
                grad_b = gb.to(W_enc.dtype) if need_b and ctx.has_bias else None
        return grad_x, grad_W, grad_b, None, None, None


# On CPU the [rows, n] pre-activations are computed in blocks of this many elements (8 MiB of
# fp32): a whole [B, n] block above glibc's largest mmap threshold (32 MiB) is a fresh mapping
# every step, paid in page faults (a sixth of a step at 4096 latents and batch 4096;
# benchmarks/RESULTS.md, session 8). Blocks of rows give the same values to the bit (each row's
# product and top-k are its own) and need no [B, n] memory at all.
_CPU_BLOCK_ELEMENTS = 1 << 21


def _topk_of_linear(x, W_enc, b_enc, k):
    """(ReLU'd values, indices) [B, k] of the k largest of ``x @ W_enc + b_enc`` per row."""
    B, n = x.shape[0], W_enc.shape[1]
    rows = B if x.device.type != "cpu" else max(64, _CPU_BLOCK_ELEMENTS // max(1, n))
    tops = []
    for s in range(0, max(B, 1), rows):  # (an empty batch: one empty block)
        xb = x[s : s + rows]
        pre = torch.addmm(b_enc, xb, W_enc) if b_enc is not None else xb @ W_enc
        tops.append(torch.topk(pre, k, dim=-1, sorted=False))
    if len(tops) == 1:
        return torch.relu(tops[0].values), tops[0].indices
    return torch.relu(torch.cat([t.values for t in tops])), torch.cat([t.indices for t in tops])


def topk_encode_dense(
    x: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same computation through plain autograd (dense backward): the test ground truth."""
    pre = torch.addmm(b_enc, x, W_enc) if b_enc is not None else x @ W_enc
    top = pre.topk(k, dim=-1, sorted=False)
    return torch.relu(top.values), top.indices


class PairsEncode(torch.autograd.Function):
    """``pre[rows, cols]`` of ``pre = x @ W_enc + b_enc`` (given, computed without grad) with a
    sparse backward: the batch top-k encoder (``pre`` may be the picked values [P] instead). ``crow`` [B + 1] are the CSR row pointers of the
    row-ordered pairs. Same gradients as the dense autograd path, from the P chosen entries only:
    grad_x = S @ W_encᵀ, grad_W_encᵀ = Sᵀ @ x, grad_b = Σ per latent, S the [B, n] CSR of grads."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, pre, rows, cols, crow):  # type: ignore[override]
        ctx.save_for_backward(x, W_enc, rows, cols, crow)
        ctx.has_bias = b_enc is not None
        return pre[rows, cols] if pre.dim() == 2 else pre.clone()  # [P]: picked by the caller

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, W_enc, rows, cols, crow = ctx.saved_tensors
        n = W_enc.shape[1]
        grad_x = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            S = reference._csr(crow, cols, g.to(W_enc.dtype), (x.shape[0], n))
            grad_x = (S @ W_enc.t()).to(x.dtype)  # CSR × strided W reads only the rows it needs
        if ctx.needs_input_grad[1]:
            grad_W = reference.pairs_grad_rows(rows, cols, g, x, n).t().to(W_enc.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = torch.zeros(n, dtype=torch.float32, device=g.device).index_add_(0, cols, g.float()).to(W_enc.dtype)
        return grad_x, grad_W, grad_b, None, None, None, None
