"""Scan k on one stream and choose the L0 (see ``saekit.evaluation.l0`` for the criterion).

All top-k dictionaries of the scan train as one sweep, so the activations are read once.
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.config import TOPK_KINDS, DictionaryConfig, TrainConfig
from saekit.errors import ConfigError
from saekit.evaluation.l0 import choose_l0
from saekit.training import train


def scan_l0(
    source: Any,
    held_out: torch.Tensor,
    n_latents: int,
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
    tcfg: TrainConfig | None = None,
    kind: str = "topk",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``kind`` dictionaries at every k of ``ks`` on ``source``; score them on ``held_out``.

    Returns ``chosen_l0`` and, per k, fvu, l0, decoder_overlap, off_projection and alive latents.
    """
    if kind not in TOPK_KINDS:
        raise ConfigError(f"scan_l0 scans k, so kind must be a top-k kind, got {kind!r}.")
    ks = tuple(sorted(set(int(k) for k in ks)))
    d_in = held_out.shape[1]
    cfgs = [DictionaryConfig(kind=kind, d_in=d_in, n_latents=n_latents, k=k) for k in ks]
    saes = train(cfgs, source, tcfg, progress=progress)
    return choose_l0(dict(zip(ks, saes)), held_out)
