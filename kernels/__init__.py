"""Sparse-decode kernels (Triton on CUDA) with plain-torch references.

``sparse_decode(idx, vals, W_dec, b_dec)`` computes ``x_hat[b] = sum_j vals[b, j] * W_dec[idx[b, j]] + b_dec``
without building the dense [B, n_latents] code; ``topk_encode(x, W_enc, b_enc, k)`` is a top-k
encoder whose backward never builds a dense [B, n_latents] gradient. Backends:

- ``"triton"``: the Triton kernels in ``saekit.kernels.triton_decode`` (CUDA tensors; on CPU only
  under ``TRITON_INTERPRET=1`` set before triton is first imported — that is how the tests check
  them without a GPU);
- ``"torch"``: the plain-torch reference (embedding_bag / gather + index_add), fast on CPU;
- ``"dense"``: the dense baseline (scatter into [B, n], then a matmul; dense autograd), kept to
  compare against and to train "the way SAELens does";
- ``"auto"`` (default): Triton for CUDA tensors when Triton is importable, the reference otherwise.

Choosing: the ``backend=`` argument of a call wins over ``with use_backend(...)`` (what a trainer
sets from ``TrainConfig.use_kernels``), which wins over "auto". The environment variable
``SAEKIT_KERNELS`` (torch | triton | dense) overrides all of them, e.g. ``SAEKIT_KERNELS=torch``
forces the reference everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from saekit.errors import ConfigError

from .encoder import PairsEncode, TopKEncode, topk_encode_dense
from .reference import SparseDecodeTorch, dense_decode, sparse_decode_naive

BACKENDS = ("auto", "triton", "torch", "dense")

__all__ = [
    "BACKENDS",
    "dense_decode",
    "pairs_encode",
    "resolve_backend",
    "sparse_decode",
    "sparse_decode_naive",
    "topk_encode",
    "topk_encode_dense",
    "triton_available",
    "use_backend",
]

_local = threading.local()


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when the triton package can be imported (it is Linux-only); looked up once."""
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _validate(name: str, backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"{name} must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    return backend


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Within the block, calls that pass ``backend="auto"`` use ``backend`` (thread-local)."""
    _validate("backend", backend)
    previous = getattr(_local, "backend", "auto")
    _local.backend = backend
    try:
        yield
    finally:
        _local.backend = previous


def resolve_backend(backend: str = "auto", device: torch.device | str = "cpu") -> str:
    """The backend ('triton', 'torch' or 'dense') a call on ``device`` with ``backend`` runs."""
    _validate("backend", backend)
    env = os.environ.get("SAEKIT_KERNELS", "").strip().lower()
    if env:
        backend = _validate("SAEKIT_KERNELS", env) if env != "auto" else backend
    if backend == "auto":
        backend = getattr(_local, "backend", "auto")
    if backend in ("torch", "dense"):
        return backend
    dev = torch.device(device)
    if backend == "auto":
        return "triton" if dev.type == "cuda" and triton_available() else "torch"
    if not triton_available():
        raise ConfigError("backend 'triton' was asked for but triton is not installed; use backend='torch'.")
    if dev.type != "cuda" and not _interpreting():
        raise ConfigError(
            f"backend 'triton' needs CUDA tensors (got {dev.type}) or TRITON_INTERPRET=1 set before import; "
            "use backend='torch'."
        )
    return "triton"


def _check(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None) -> None:
    if idx.shape != vals.shape:
        raise ValueError(f"idx {tuple(idx.shape)} and vals {tuple(vals.shape)} must have one shape [..., k].")
    if idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"idx must be an integer tensor (int64 or int32), got {idx.dtype}.")
    if W_dec.dim() != 2:
        raise ValueError(f"W_dec must be [n_latents, d_out], got shape {tuple(W_dec.shape)}.")
    if b_dec is not None and b_dec.shape != (W_dec.shape[1],):
        raise ValueError(f"b_dec must be [d_out] = [{W_dec.shape[1]}], got shape {tuple(b_dec.shape)}.")
    if not (idx.device == vals.device == W_dec.device):
        raise ValueError(f"idx, vals, W_dec must share a device: {idx.device} {vals.device} {W_dec.device}.")


def sparse_decode(
    idx: torch.Tensor,
    vals: torch.Tensor,
    W_dec: torch.Tensor,
    b_dec: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``x_hat = sum_j vals[..., j] * W_dec[idx[..., j]] (+ b_dec)``, differentiable in vals, W_dec, b_dec.

    idx: [..., k] int64/int32 latent indices (repeats in a row are summed); vals: [..., k];
    W_dec: [n_latents, d_out]; b_dec: [d_out] or None. Returns [..., d_out] in the promoted
    dtype of vals and W_dec, accumulated in fp32 (the dense backend accumulates as matmul does).
    """
    _check(idx, vals, W_dec, b_dec)
    lead = idx.shape[:-1]
    k = idx.shape[-1]
    rows = 1
    for s in lead:
        rows *= s
    idx2 = idx.reshape(rows, k).long()
    vals2 = vals.reshape(rows, k)
    chosen = resolve_backend(backend, W_dec.device)
    if chosen == "dense":
        out = dense_decode(idx2, vals2, W_dec, b_dec)
    elif chosen == "triton" and idx2.numel() > 0:  # empty inputs: no kernel launch for nothing
        from .triton_decode import SparseDecodeTriton

        out = SparseDecodeTriton.apply(idx2, vals2, W_dec, b_dec)
    elif vals2.dtype == W_dec.dtype == torch.float32 and W_dec.is_contiguous() and idx2.numel() > 0:
        # fp32: embedding_bag's own autograd is the fastest torch path measured on CPU (its fused
        # sorted-index weight backward beat a CSR matmul; benchmarks/RESULTS.md, issue 5).
        out = F.embedding_bag(idx2, W_dec, per_sample_weights=vals2, mode="sum")
        out = out + b_dec if b_dec is not None else out
    else:  # half precision (fp32 accumulation), strided W_dec: the custom sparse autograd Function
        out = SparseDecodeTorch.apply(idx2, vals2, W_dec, b_dec)
    return out.reshape(*lead, W_dec.shape[1])


def topk_encode(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor | None,
    k: int,
    backend: str = "auto",
    fused: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vals, idx)`` [B, k]: the k largest of ``x @ W_enc + b_enc`` per row, ReLU'd.

    The backward is sparse (see ``saekit.kernels.encoder``): grads of x, W_enc [d_in, n] and
    b_enc come from the k selected entries per row, never from a dense [B, n] gradient.
    ``fused=True`` (Triton backend only; other backends ignore it) computes the forward with the
    fused kernel of ``saekit.kernels.fused_encoder``, never materialising the [B, n] pre-activations.
    The order of the k entries in a row is unspecified.
    """
    if x.dim() != 2 or W_enc.dim() != 2 or x.shape[1] != W_enc.shape[0]:
        shapes = f"{tuple(x.shape)} and {tuple(W_enc.shape)}"
        raise ValueError(f"x must be [B, d_in] and W_enc [d_in, n] with one d_in, got {shapes}.")
    if not 1 <= k <= W_enc.shape[1]:
        raise ValueError(f"k must be in [1, n_latents={W_enc.shape[1]}], got {k}.")
    chosen = resolve_backend(backend, W_enc.device)
    if chosen == "dense":
        return topk_encode_dense(x, W_enc, b_enc, k)
    return TopKEncode.apply(x, W_enc, b_enc, k, chosen, fused)


def pairs_encode(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor | None,
    pre: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    crow: torch.Tensor,
) -> torch.Tensor:
    """``pre[rows, cols]`` [P], differentiable in x, W_enc, b_enc with a sparse backward.

    ``pre`` = ``x @ W_enc + b_enc`` [B, n] computed by the caller without grad (it chose the pairs
    from it), or the picked values ``pre[rows, cols]`` [P] when the caller holds them; ``rows`` non-decreasing with CSR pointers ``crow`` [B + 1]: a code with a different number
    of entries per row (batch top-k). The backward never builds a dense [B, n] gradient
    (``saekit.kernels.encoder.PairsEncode``). fp32 tensors on CPU or CUDA (torch sparse CSR).
    """
    return PairsEncode.apply(x, W_enc, b_enc, pre, rows, cols, crow)
