"""Step 2: each variant's activations, read once and shared by every dictionary and seed.

Training activations are held in memory, or (``cache_dir``) written once to a disk cache of
safetensors shards and read back by a shuffled, seeded reader per dictionary seed. Held-out
activations are always in memory (they are small and every evaluation reads them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saekit.activations import read_activations
from saekit.config import DictionaryConfig
from saekit.errors import ConfigError
from saekit.evaluation.splice import split_hooks
from saekit.pipeline.variants import SharedTokens


def rows(acts: torch.Tensor) -> torch.Tensor:
    """Activations [n_seq, n_ctx, d] -> [n_seq * (n_ctx - 1), d] without the BOS position."""
    return acts[:, 1:].reshape(-1, acts.shape[-1])


def build_variant_cache(handle: Any, tokens: torch.Tensor, hooks: list[str], path: Path, quiet: bool = True) -> Path:
    """Training activations of one variant at ``hooks`` written once to ``path`` (``build_cache``).

    A complete cache with the same model, tokens and hooks is checked and reused, an interrupted one
    resumed. A saekit cache built with other settings (e.g. the variant was retrained) is stale
    derived data: it is rebuilt. A non-empty folder that is not a saekit cache is never deleted.
    """
    from saekit.activations import build_cache
    from saekit.activations.writer import FORMAT, MANIFEST
    from saekit.fileutil import read_json

    try:
        return build_cache(handle, tokens, hooks, path, batch_size=16, progress=not quiet)
    except ConfigError:
        manifest = path / MANIFEST
        if not (manifest.is_file() and read_json(manifest, "cache manifest").get("format") == FORMAT):
            raise
    if not quiet:
        print(f"[compare] {path} holds a cache built with other settings; rebuilding it", file=sys.stderr)
    return build_cache(handle, tokens, hooks, path, batch_size=16, progress=not quiet, overwrite=True)


def cache_reader(path: Path, hook: str | tuple[str, str], seed: int) -> Any:
    """A shuffled, seeded reader of a cache ``build_cache`` has just written or validated."""
    from saekit.activations import ActivationCache, read_manifest

    n = int(read_manifest(path)["n_tokens"])
    # a fill as large as the cache (up to the reader's default) shuffles across the whole epoch
    return ActivationCache(path, hook, seed=seed, buffer_tokens=2 * min(n, 1 << 17), verify=False, progress=False)


def grid_from_cache(path: Path, hook: str, n_seqs: int, n_ctx: int) -> torch.Tensor:
    """Activations [n_seqs, n_ctx, d] of the first ``n_seqs`` sequences, put back on their token grid.

    The cache drops BOS positions; they stay zero here (auto-interp clears position 0 anyway).
    Only the shards that hold those sequences are read.
    """
    from saekit.activations import read_manifest
    from saekit.activations.shards import ShardFile

    manifest = read_manifest(path)
    grid = torch.zeros(n_seqs, n_ctx, int(manifest["hookpoints"][hook]["d"]))
    for rec in manifest["shards"]:
        shard = ShardFile(path / rec["file"], int(rec["bytes"]))
        docs, pos = shard.read_all("doc_ids").long(), shard.read_all("positions").long()
        keep = docs < n_seqs
        grid[docs[keep], pos[keep]] = shard.read_all(hook)[keep].float()
        shard.close()
        if len(docs) and int(docs[-1]) >= n_seqs:
            break
    return grid


@dataclass
class VariantActivations:
    """One variant's activations: training (in memory or a cache folder) and held-out (in memory)."""

    held_out: dict[str, torch.Tensor]  # hook -> [n_seq, n_ctx, d]
    train: dict[str, torch.Tensor] = field(default_factory=dict)  # empty when training from ``cache``
    cache: Path | None = None
    n_explain_seqs: int = 0
    n_ctx: int = 0

    def training_source(self, cfg: DictionaryConfig, seed: int) -> Any:
        """What ``saekit.train`` reads: a tensor (or an (x, y) pair), or a seeded cache reader to close."""
        in_hook, out_hook = split_hooks(cfg)
        if self.cache is not None:
            return cache_reader(self.cache, (in_hook, out_hook) if out_hook else in_hook, seed)
        return (rows(self.train[in_hook]), rows(self.train[out_hook])) if out_hook else rows(self.train[in_hook])

    def held_out_source(self, cfg: DictionaryConfig) -> Any:
        in_hook, out_hook = split_hooks(cfg)
        return (
            (rows(self.held_out[in_hook]), rows(self.held_out[out_hook])) if out_hook else rows(self.held_out[in_hook])
        )

    def explain_grid(self, hook: str) -> torch.Tensor:
        """Training activations [n_explain_seqs, n_ctx, d] at ``hook``, for auto-interp explanations."""
        if hook not in self.train:  # training from a cache: read the rows back once
            assert self.cache is not None
            self.train[hook] = grid_from_cache(self.cache, hook, self.n_explain_seqs, self.n_ctx)
        return self.train[hook][: self.n_explain_seqs]


def variant_activations(
    handle: Any,
    tokens: SharedTokens,
    hooks: list[str],
    n_explain_seqs: int,
    cache_dir: Path | None,
    name: str,
    quiet: bool,
) -> VariantActivations:
    """Read (or cache) the training activations of one variant and its held-out activations."""
    n_explain = min(n_explain_seqs, tokens.train.shape[0])
    acts = VariantActivations(held_out={}, n_explain_seqs=n_explain, n_ctx=tokens.n_ctx)
    if cache_dir is None:
        acts.train = read_activations(handle, tokens.train, hooks, progress=not quiet)
    else:  # one model pass per variant; a complete cache is validated and reused
        acts.cache = build_variant_cache(handle, tokens.train, hooks, Path(cache_dir) / name, quiet)
    acts.held_out = read_activations(handle, tokens.eval, hooks, progress=not quiet)
    return acts
