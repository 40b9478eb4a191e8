"""Metadata helpers shared by the folder writers (plain and crosscoder): versions, JSON-safe
values and scalar training buffers. Imports nothing from dictionaries/ or the other io modules."""

from __future__ import annotations

import math
import platform
from typing import Any

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


def _jsonable(obj: Any) -> Any:
    """Make metrics/config values JSON-safe (tensors -> numbers/lists, NaN/inf -> None)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu()
        return _jsonable(obj.item() if obj.numel() == 1 else obj.tolist())
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    return str(obj)


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
