"""One Jinja2 environment for every saekit page (autoescaped), and one number format for its tables."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


@functools.cache
def environment(strict: bool = False) -> Environment:
    """The templates of ``saekit.report``. ``strict``: an undefined name fails the render (pages built
    from one fixed data layout) instead of rendering empty, and block tags keep their whitespace."""
    if strict:
        return Environment(loader=PackageLoader("saekit.report", "templates"), autoescape=True, undefined=StrictUndefined)
    return Environment(
        loader=PackageLoader("saekit.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: "–" for a missing or non-finite value, integers whole, floats to ``digits``."""
    if x is None or (isinstance(x, (float, np.floating)) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)
