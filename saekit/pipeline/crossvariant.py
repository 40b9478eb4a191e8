"""Step 4: across variants: matching beside the seed noise floor and chance, cross-application,
feature splitting across widths."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.evaluation.matching import activation_correlation, chance_level, compare_weights
from saekit.evaluation.metrics import dictionary_metrics
from saekit.evaluation.probes import feature_splitting
from saekit.evaluation.splice import split_hooks
from saekit.pipeline.activations import VariantActivations, rows
from saekit.pipeline.dictionaries import drop_arrays

Dictionaries = dict[tuple[str, str, int], torch.nn.Module]  # (variant, dictionary name, seed) -> trained


def pair_similarity(a: Any, b: Any, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, Any]:
    """Decoder and encoder matching of two dictionaries, and activation correlation of matched latents."""
    dec = compare_weights(a.W_dec, b.W_dec)
    enc = compare_weights(a.W_enc.T, b.W_enc.T)
    corr = activation_correlation(a, b, x_a, x_b, (np.array(dec["perm_a"]), np.array(dec["perm_b"])))
    return {"decoder": drop_arrays(dec), "encoder": drop_arrays(enc), **drop_arrays(corr)}


def matching(
    dict_cfgs: dict[str, DictionaryConfig], seeds: tuple[int, ...], saes: Dictionaries,
    acts: dict[str, VariantActivations],
) -> dict[str, Any]:  # fmt: skip
    """Cross-variant matching beside each variant's seed noise floor and chance.

    A cross-variant pair is (variant A, first seed) vs (variant B, second seed): like the noise
    floor pair it never shares an initialisation, which would otherwise inflate the similarity of
    briefly trained dictionaries.
    """
    s0, s1 = seeds[0], seeds[1]
    variants = list(acts)
    out: dict[str, Any] = {}
    for name, cfg in dict_cfgs.items():
        in_hook, _ = split_hooks(cfg)
        x = {v: rows(acts[v].held_out[in_hook]) for v in variants}
        noise = {v: pair_similarity(saes[(v, name, s0)], saes[(v, name, s1)], x[v], x[v]) for v in variants}
        cross = []
        for i, va in enumerate(variants):
            for vb in variants[i + 1 :]:
                r = pair_similarity(saes[(va, name, s0)], saes[(vb, name, s1)], x[va], x[vb])
                cross.append({**r, "a": va, "b": vb})
        n, d = saes[(variants[0], name, s0)].W_dec.shape
        out[name] = {"noise_floor": noise, "cross": cross, "chance": chance_level(n, n, d)}
    return out


def cross_application(
    dict_cfgs: dict[str, DictionaryConfig], seed: int, saes: Dictionaries, acts: dict[str, VariantActivations]
) -> dict[str, Any]:
    """FVU of variant A's dictionary on variant B's activations (rows: dictionary, columns: activations)."""
    out = {}
    for name, cfg in dict_cfgs.items():
        table = {}
        for va in acts:
            row = {}
            for vb, acts_b in acts.items():
                m = dictionary_metrics(saes[(va, name, seed)], acts_b.held_out_source(cfg))
                row[vb] = {"fvu": m["fvu"], "l0": m["l0"]}
            table[va] = row
        out[name] = table
    return out


def split_probe(
    name: str, cfg: DictionaryConfig, acts: VariantActivations, wide: Any, tcfg: TrainConfig, seed: int,
    progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """Train a 4x narrower SAE on the same activations and group the wide SAE's latents under its latents."""
    from saekit.pipeline.dictionaries import train_dictionary

    narrow_cfg = cfg.replace(n_latents=cfg.n_latents // 4, k=min(cfg.k, cfg.n_latents // 4) if cfg.k else None)
    narrow = train_dictionary(narrow_cfg, acts, tcfg, seed, progress)
    fs = feature_splitting(narrow, wide)
    fs.pop("children")
    fs.update({"dict": name, "narrow_n_latents": narrow_cfg.n_latents, "wide_n_latents": cfg.n_latents})
    return fs
