"""Progress bars that show tokens/s for long work (tqdm, to stderr).

On a terminal the bar redraws twice a second. Written to a file or a pipe (CI logs, nohup) every
redraw is a new line in the log, so there it redraws once per ``SAEKIT_PROGRESS_INTERVAL``
seconds (default 30).
"""

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
        mininterval=0.5 if _is_terminal(sys.stderr) else float(os.environ.get("SAEKIT_PROGRESS_INTERVAL", "30")),
    )


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def status(message: str) -> None:
    """One line on stderr before slow start-up work (loading a model, tokenizing), so a silent
    pause reads as work; off with the progress bars (SAEKIT_NO_PROGRESS=1)."""
    if os.environ.get("SAEKIT_NO_PROGRESS") != "1":
        print(f"saekit: {message}", file=sys.stderr, flush=True)
