"""The one JSON sanitiser: what saekit writes as JSON is strict JSON (no NaN), whatever it measured."""

from __future__ import annotations

import math
from typing import Any


def json_safe(obj: Any) -> Any:
    """``obj`` with tensors and numpy values made numbers or lists, NaN/inf made None, keys made str.

    Objects with ``to_dict()`` (configs) are converted through it; anything else unknown becomes its
    ``str``, so writing never fails half-way through a results file.
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu()
        return json_safe(obj.tolist())
    if hasattr(obj, "to_dict"):
        return json_safe(obj.to_dict())
    return str(obj)
