"""A comparison's crosscoder step (``saekit compare --crosscoder``): baseline against each variant.

For every variant group other than the baseline, one crosscoder per dictionary seed is trained on
the baseline's and that variant's training activations at one hookpoint, over the comparison's own
token list (the rows are the same tokens in both models), and analysed on the comparison's held-out
tokens. Each pair gets its own page and results under ``OUT/crosscoders/<baseline>_vs_<variant>/``
(the same files as ``saekit crosscode``); results.json's ``crosscoders`` holds every pair's figures,
and the comparison report a section that links to the pages.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError
from saekit.fileutil import atomic_write_json


@dataclass
class CrosscoderSettings:
    """What ``--crosscoder`` trains. None fields follow the comparison's first SAE (its hookpoint, width, k)."""

    kind: str = "batchtopk"
    hookpoint: str | None = None
    n_latents: int | None = None
    k: int | None = None
    sparsity_coef: float | None = None

    def config(self, dict_cfgs: dict[str, DictionaryConfig], names: tuple[str, str]) -> DictionaryConfig:
        """The crosscoder config of one pair, filled from the comparison's first single-hook dictionary."""
        ref = next((c for c in dict_cfgs.values() if not c.transcoder and c.d_out in (None, c.d_in)), None)
        if ref is None and (self.hookpoint is None or self.n_latents is None):
            raise ConfigError(
                "--crosscoder needs --crosscoder-hookpoint and --crosscoder-n-latents when the comparison has no SAE."
            )
        hook = self.hookpoint or ref.hook_name
        d_in = next((c.d_in for c in dict_cfgs.values() if c.hook_name == hook), ref.d_in if ref else 1)
        k = None if self.kind == "relu" else (self.k or (ref.k if ref and ref.k else 32))
        extra = {"sparsity_coef": self.sparsity_coef} if self.sparsity_coef is not None else {}
        return DictionaryConfig(
            kind=self.kind, d_in=d_in, n_latents=self.n_latents or ref.n_latents, k=k, n_sources=2,
            source_names=names, hook_name=hook, **extra,
        )  # fmt: skip


def crosscoder_hook(settings: CrosscoderSettings, dict_cfgs: dict[str, DictionaryConfig]) -> str:
    """The hookpoint the crosscoders read (checked against the comparison's hooks before any training)."""
    return settings.config(dict_cfgs, ("a", "b")).hook_name


def pairs(groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(baseline model, variant model): the first model of the baseline group against each other group's first."""
    base_group = "baseline" if "baseline" in groups else next(iter(groups))
    base = groups[base_group][0]
    return [(base, models[0]) for g, models in groups.items() if g != base_group]


def compare_crosscoders(
    settings: CrosscoderSettings,
    dict_cfgs: dict[str, DictionaryConfig],
    groups: dict[str, list[str]],
    train_source: Any,
    held_grids: dict[str, torch.Tensor],
    eval_tokens: torch.Tensor,
    tokenizer: Any,
    tcfg: TrainConfig,
    seeds: tuple[int, ...],
    out: Path,
    quiet: bool = True,
) -> dict[str, Any]:
    """Train and analyse every pair's crosscoders; return {variant model: that pair's results}.

    train_source(model name, seed): what ``saekit.train`` reads for that model (a tensor [N, d] or
    a seeded cache reader; readers of the same tokens opened with the same seed stay aligned).
    held_grids: model name -> held-out activations [n_seq, n_ctx, d] at the hookpoint over ``eval_tokens``.
    """
    from saekit.pipeline.crosscoder import combine_seeds
    from saekit.pipeline.crosscoder_analysis import analyse_held_out, held_out_from_grids
    from saekit.report.crosscoder import write_crosscoder_report
    from saekit.training import train

    found = {}
    for base, variant in pairs(groups):
        # the width is read from the activations: --crosscoder-hookpoint may be one no dictionary reads
        cfg = settings.config(dict_cfgs, (base, variant)).replace(d_in=int(held_grids[base].shape[-1]))
        held = held_out_from_grids([held_grids[base], held_grids[variant]], eval_tokens, tokenizer)
        folder = out / "crosscoders" / _slug(f"{base}_vs_{variant}")
        analyses = {}
        for seed in seeds:
            if not quiet:
                print(f"[compare] crosscoder {base} vs {variant}, seed {seed}: training", file=sys.stderr, flush=True)
            sources = {base: train_source(base, seed), variant: train_source(variant, seed)}
            try:
                run_cfg = tcfg.replace(seed=seed, normalize=True, out_dir=None)
                cc = train(cfg, sources, run_cfg, progress=not quiet).eval()
            finally:
                for s in sources.values():
                    if hasattr(s, "close"):
                        s.close()
            cc.save(folder / f"crosscoder_seed{seed}")
            analyses[seed] = analyse_held_out(cc, held)
        results = combine_seeds(analyses)
        atomic_write_json(folder / "results.json", results)
        write_crosscoder_report(results, folder)
        found[variant] = {**results, "page": str((folder / "report.html").relative_to(out))}
    return found


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name)
