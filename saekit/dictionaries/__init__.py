"""Sparse dictionaries: one file per architecture over a shared base (``base.py``).

``create(cfg)`` builds and initialises the dictionary a ``DictionaryConfig`` describes.
"""

from __future__ import annotations

import torch

from saekit.config import DictionaryConfig
from saekit.dictionaries.abstopk import AbsTopKDictionary
from saekit.dictionaries.base import SparseDictionary, TrainOutput, sparse_decode
from saekit.dictionaries.batchtopk import BatchTopKDictionary
from saekit.dictionaries.crosscoder import CrossCoder, init_crosscoder
from saekit.dictionaries.gated import GatedDictionary
from saekit.dictionaries.init import geometric_median, init_b_dec, init_weights
from saekit.dictionaries.jumprelu import JumpReLUDictionary
from saekit.dictionaries.matryoshka import MatryoshkaDictionary
from saekit.dictionaries.registry import ARCHITECTURES, CROSSCODERS, architecture, crosscoder_class
from saekit.dictionaries.relu import ReLUDictionary
from saekit.dictionaries.topk import TopKDictionary
from saekit.errors import ConfigError


def create(
    cfg: DictionaryConfig,
    seed: int = 0,
    sample: torch.Tensor | None = None,
    init: bool = True,
    device: str | torch.device | None = None,
) -> SparseDictionary:
    """Build the dictionary ``cfg`` describes, initialised from ``seed``.

    ``sample`` (targets [N, d_out]) sets b_dec per ``cfg.b_dec_init``; ``init=False`` leaves the
    weights at zero (for a loader about to fill them).
    """
    if not isinstance(cfg, DictionaryConfig):
        raise ConfigError(f"create() expects a DictionaryConfig, got {type(cfg).__name__}.")
    is_crosscoder = cfg.n_sources > 1
    sae = (crosscoder_class(cfg.kind) if is_crosscoder else architecture(cfg.kind))(cfg)
    if init:
        (init_crosscoder if is_crosscoder else init_weights)(sae, seed)
        if sample is not None:
            init_b_dec(sae, sample)
    if device is not None:
        sae = sae.to(device)
    return sae


__all__ = [
    "ARCHITECTURES",
    "CROSSCODERS",
    "AbsTopKDictionary",
    "BatchTopKDictionary",
    "CrossCoder",
    "GatedDictionary",
    "JumpReLUDictionary",
    "MatryoshkaDictionary",
    "ReLUDictionary",
    "SparseDictionary",
    "TopKDictionary",
    "TrainOutput",
    "architecture",
    "create",
    "geometric_median",
    "init_b_dec",
    "init_weights",
    "sparse_decode",
]
