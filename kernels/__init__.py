"""Sparse-decode kernels (Triton on CUDA) with plain-torch references.

``sparse_decode(idx, vals, W_dec, b_dec)`` computes ``x_hat[b] = sum_j vals[b, j] * W_dec[idx[b, j]] + b_dec``
without building the dense [B, n_latents] code. Backends:

- ``"triton"``: the Triton kernels in ``saekit.kernels.triton_decode`` (CUDA tensors; on CPU only
  under ``TRITON_INTERPRET=1``, which is how the tests check them without a GPU);
- ``"torch"``: the plain-torch reference (embedding_bag / gather + index_add), fast on CPU;
- ``"auto"`` (default): Triton for CUDA tensors when Triton is importable, the reference otherwise.

The environment variable ``SAEKIT_KERNELS=torch`` forces the reference everywhere (and
``SAEKIT_KERNELS=triton`` forces Triton), whatever the ``backend`` argument says.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from saekit.errors import ConfigError

from .reference import SparseDecodeTorch, dense_decode, sparse_decode_naive

BACKENDS = ("auto", "triton", "torch")

__all__ = [
    "BACKENDS",
    "dense_decode",
    "resolve_backend",
    "sparse_decode",
    "sparse_decode_naive",
    "triton_available",
]


def triton_available() -> bool:
    """True when the triton package can be imported (it is Linux-only)."""
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str = "auto", device: torch.device | str = "cpu") -> str:
    """The backend ('triton' or 'torch') a call on ``device`` with ``backend`` runs."""
    env = os.environ.get("SAEKIT_KERNELS", "").strip().lower()
    if env:
        if env not in BACKENDS:
            raise ConfigError(f"SAEKIT_KERNELS must be one of {', '.join(BACKENDS)}, got {env!r}.")
        if env != "auto":
            backend = env
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    dev = torch.device(device)
    if backend == "torch":
        return "torch"
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
    dtype of vals and W_dec, accumulated in fp32.
    """
    _check(idx, vals, W_dec, b_dec)
    lead = idx.shape[:-1]
    k = idx.shape[-1]
    rows = 1
    for s in lead:
        rows *= s
    idx2 = idx.reshape(rows, k).long()
    vals2 = vals.reshape(rows, k)
    # Empty batches or k = 0 go to the reference: no kernel launch for nothing.
    if idx2.numel() > 0 and resolve_backend(backend, W_dec.device) == "triton":
        from .triton_decode import SparseDecodeTriton

        out = SparseDecodeTriton.apply(idx2, vals2, W_dec, b_dec)
    else:
        out = SparseDecodeTorch.apply(idx2, vals2, W_dec, b_dec)
    return out.reshape(*lead, W_dec.shape[1])
