"""Fused top-k encoder forward (Triton): x @ W_enc + b_enc tile by tile, keeping only each row's
running top-k, so the [B, n] pre-activations are never written to memory.

Each program owns BLOCK_B rows and one slice of the latents (a "split"); for every [BLOCK_B,
BLOCK_N] tile it computes the pre-activations with ``tl.dot`` (fp32 accumulation, IEEE fp32 for
fp32 inputs so the selection matches torch's matmul), packs each value with its latent index
into one int64 key, takes the tile's top-K with ``tl.topk`` and merges it into the running top-K.
The splits' K candidates per row are merged by one small ``torch.topk`` over [B, splits·K].

Key packing: a float's bits ``f`` (as int32) map to ``f`` if f ≥ 0 else ``f ^ 0x7FFFFFFF``, an
int32 whose signed order is the float order; ``key = that << 32 | (0xFFFFFFFF - index)`` orders
by value, then by lower index — one integer sort carries both.

Memory traffic: reads x once per split and W_enc once per row block (like a tiled matmul),
writes B·splits·K keys instead of B·n pre-activations. It is opt-in (``topk_encode(...,
fused=True)`` on the Triton backend): with no GPU available while it was written it is
unmeasured against cuBLAS + ``torch.topk``; ``benchmarks/kernels/bench_decode.py --op encode``
times ``saekit-triton-fused`` next to ``saekit-triton`` so the default can follow the figures.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_LOW = 0xFFFFFFFF


@triton.jit
def _fused_topk_partial(
    x_ptr, w_ptr, b_ptr, keys_ptr,
    B, N, D, N_PER_SPLIT,
    s_xb, s_xd, s_wd, s_wn, s_bn, s_kb, s_ks,
    HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, K_PAD: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_b = (pid_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_b = offs_b < B
    lowest = tl.full([BLOCK_B, BLOCK_N], -9223372036854775808, dtype=tl.int64)
    run = tl.full([BLOCK_B, K_PAD], -9223372036854775808, dtype=tl.int64)
    n_start = pid_s * N_PER_SPLIT
    n_end = tl.minimum(n_start + N_PER_SPLIT, N)
    for n0 in range(n_start, n_end, BLOCK_N):
        offs_n = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask_n = offs_n < n_end
        acc = tl.zeros([BLOCK_B, BLOCK_N], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            mask_d = offs_d < D
            xt = tl.load(
                x_ptr + offs_b[:, None] * s_xb + offs_d[None, :] * s_xd,
                mask=mask_b[:, None] & mask_d[None, :],
                other=0,
            ).to(tl.float32)
            wt = tl.load(
                w_ptr + offs_d[:, None] * s_wd + offs_n[None, :] * s_wn,
                mask=mask_d[:, None] & mask_n[None, :],
                other=0,
            ).to(tl.float32)
            if IEEE:
                acc += tl.dot(xt, wt, input_precision="ieee")
            else:
                acc += tl.dot(xt, wt)
        if HAS_BIAS:
            acc += tl.load(b_ptr + offs_n * s_bn, mask=mask_n, other=0).to(tl.float32)[None, :]
        bits = acc.to(tl.int32, bitcast=True)
        ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)
        key = (ordered << 32) | (0xFFFFFFFF - offs_n)[None, :]
        key = tl.where(mask_n[None, :], key, lowest)
        tile_top = tl.topk(key, K_PAD, dim=1)
        both = tl.reshape(tl.join(run, tile_top), [BLOCK_B, 2 * K_PAD])
        run = tl.topk(both, K_PAD, dim=1)
    offs_k = tl.arange(0, K_PAD)
    tl.store(
        keys_ptr + offs_b[:, None] * s_kb + (pid_s * K_PAD + offs_k)[None, :] * s_ks,
        run,
        mask=mask_b[:, None],
    )


def _decode_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values fp32, indices int64) from packed keys."""
    ordered = (keys >> 32).to(torch.int32)
    bits = torch.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF)
    values = bits.view(torch.float32)
    idx = _LOW - (keys & _LOW)
    return values, idx


def fused_topk_forward(
    x: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor | None, k: int, programs: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre-activation values fp32 [B, k], indices [B, k]) of the k largest of x @ W_enc + b_enc.

    ``programs`` is the target number of programs (row blocks × latent splits) to fill the GPU.
    """
    B, D = x.shape
    N = W_enc.shape[1]
    K_PAD = triton.next_power_of_2(k)
    BLOCK_B, BLOCK_D = 16, 32
    BLOCK_N = max(64, K_PAD)  # tl.topk needs K_PAD ≤ the tile width
    row_blocks = triton.cdiv(B, BLOCK_B)
    tiles = triton.cdiv(N, BLOCK_N)
    splits = max(1, min(tiles, programs // max(1, row_blocks)))
    n_per_split = BLOCK_N * triton.cdiv(tiles, splits)
    splits = triton.cdiv(N, n_per_split)
    keys = torch.empty(B, splits * K_PAD, dtype=torch.int64, device=x.device)
    b = b_enc if b_enc is not None else x  # placeholder pointer when there is no bias
    _fused_topk_partial[(row_blocks, splits)](
        x, W_enc, b, keys, B, N, D, n_per_split,
        x.stride(0), x.stride(1), W_enc.stride(0), W_enc.stride(1),
        b_enc.stride(0) if b_enc is not None else 0, keys.stride(0), keys.stride(1),
        HAS_BIAS=b_enc is not None, IEEE=x.dtype == torch.float32 and W_enc.dtype == torch.float32,
        K_PAD=K_PAD, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )  # fmt: skip
    top = keys.topk(k, dim=1, sorted=False).values if keys.shape[1] > k else keys
    return _decode_keys(top)
