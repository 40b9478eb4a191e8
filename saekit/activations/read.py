"""Activations of a whole token grid held in memory, and the one default context length.

``read_activations`` is for evaluation-sized token sets (held-out text, a comparison's training
set of a tiny model); larger sets go through the disk cache (``build_cache``) or a live stream.
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.activations.hookpoints import HookpointReader
from saekit.models.handle import ModelHandle
from saekit.progress import token_bar

# the one context length default: the model's own, capped so that a long-context model does not make
# every evaluation pack 8k-token rows; 128 for a model that states none
MAX_DEFAULT_N_CTX = 1024
FALLBACK_N_CTX = 128


def default_n_ctx(model: Any, requested: int | None = None) -> int:
    """``requested`` if given, else the model's context length capped at ``MAX_DEFAULT_N_CTX``.

    model: a saekit ModelHandle, a HookedTransformer (``cfg.n_ctx``) or an HF model
    (``config.max_position_embeddings``).
    """
    if requested:
        return int(requested)
    module = ModelHandle.wrap(model).model
    own = getattr(getattr(module, "cfg", None), "n_ctx", None) or getattr(
        getattr(module, "config", None), "max_position_embeddings", None
    )
    return min(int(own), MAX_DEFAULT_N_CTX) if own else FALLBACK_N_CTX


@torch.no_grad()
def read_activations(
    model: Any, tokens: torch.Tensor, hooks: list[str], batch_size: int = 16, progress: bool = True
) -> dict[str, torch.Tensor]:
    """Activations [n_seq, n_ctx, d] (float32, CPU) at each hook, one forward pass per batch."""
    reader = HookpointReader(model, hooks)
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    bar = token_bar(tokens.numel(), f"activations {ModelHandle.wrap(model).variant}", disable=None if progress else True)
    for s in range(0, tokens.shape[0], batch_size):
        batch = tokens[s : s + batch_size]
        for h, a in reader(batch.to(reader.device)).items():
            parts[h].append(a.float().cpu())
        bar.update(batch.numel())
    bar.close()
    return {h: torch.cat(p) for h, p in parts.items()}
