"""Rules about transformer-lens hook names that several stages share (no model needed)."""

from __future__ import annotations

import re

# transcoder input hook -> the MLP output hook it predicts
_MLP_IN = re.compile(r"^blocks\.(\d+)\.(ln2\.hook_normalized|hook_mlp_in|hook_resid_mid)$")


def guess_out_hook(in_hook: str) -> str | None:
    """The MLP output hook a transcoder reading ``in_hook`` most likely predicts, or None.

    Only a fallback for folders that do not record their output hook (``hook_name_out``):
    a transcoder saekit trains records it.
    """
    m = _MLP_IN.match(in_hook or "")
    return f"blocks.{m.group(1)}.hook_mlp_out" if m else None
