"""Progress bars that show tokens/s for long work (tqdm, to stderr)."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def token_bar(total_tokens: int | None, desc: str, disable: bool | None = None) -> tqdm:
    """A tqdm bar counted in tokens, so its rate reads as tokens/s."""
    if disable is None:
        disable = os.environ.get("SAEKIT_NO_PROGRESS") == "1"
    return tqdm(
        total=total_tokens,
        desc=desc,
        unit="tok",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=disable,
        mininterval=0.5,
    )
