"""Metadata helpers shared by the folder writers (plain and crosscoder): versions and scalar
training buffers (JSON-safe values: saekit.jsonsafe). Imports nothing from dictionaries/ or the other io modules."""

from __future__ import annotations

import platform

import torch

# tensors that live in the weights file (the rest of a dictionary's scalar buffers go to saekit.json)
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip")


def _versions() -> dict[str, str]:
    import safetensors

    from saekit import __version__

    return {
        "saekit": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def extra_buffers(sae: torch.nn.Module) -> dict[str, float | int]:
    """Scalar training buffers outside SAELens's names (e.g. batchtopk's threshold_updates).

    They go to ``saekit.json`` rather than the weights file, which SAELens loads strictly.
    """
    out: dict[str, float | int] = {}
    for name, buf in sae.named_buffers():
        if name in WEIGHT_NAMES or name == "act_scale" or buf.numel() != 1:
            continue
        out[name] = buf.item()
    return out
