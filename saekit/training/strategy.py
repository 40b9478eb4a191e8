"""How a Trainer shares its work with other processes: ``Solo`` (this file) is one process.

The training loop (``saekit.training.loop``) knows no ranks. Everything that depends on other
processes goes through one strategy object, which owns:

* the dictionaries it builds (a latent-sharded strategy builds shards) and the latents it tracks;
* the rows of each batch this process trains on, and how many tokens a step covers;
* gradient reduction, gradient clipping and the fired-mask reduction of every step;
* the metrics of a logged step (reduced to the global batch), the rows resampling sees;
* who writes (metrics, checkpoints, dictionaries), checkpoint paths, what a checkpoint holds
  and how it is read back;
* the final assembly of the dictionaries, and the end-of-training rendezvous.

``Solo`` is all identities. Data parallelism and latent sharding are strategies in
``saekit.parallel`` (the only package that imports torch.distributed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.dictionaries import SparseDictionary, create
from saekit.training.checkpoint import CHECKPOINT_NAME, load_checkpoint

Batch = tuple[torch.Tensor, torch.Tensor | None]


class Solo:
    """One process: reads whole batches, owns whole dictionaries, writes every output."""

    writes = True  # this process writes metrics, train_config.json, checkpoints and dictionaries
    collective_encode = False  # True when encoding needs every process (latent sharding)
    checkpoint_on_bad_data = True  # a stop on bad data may first write the last good state

    def __init__(self) -> None:
        self.out_dir: Path | None = None

    # ------------------------------------------------------------------ set-up
    def bind(self, out_dir: Path | None, tcfg: TrainConfig) -> None:
        """Called once by the Trainer before it builds anything (checks that need the config)."""
        self.out_dir = out_dir

    def make_dictionary(self, cfg: DictionaryConfig, seed: int, device: torch.device) -> SparseDictionary:
        return create(cfg, seed=seed).to(device)

    def latents_here(self, sae: SparseDictionary) -> int:
        """How many latents this process tracks (dead-latent counters)."""
        return sae.n_latents

    def after_init(self, setup: dict[str, Any], saes: dict[str, SparseDictionary]) -> None:
        """Called once the dictionaries are initialised (a data-parallel check goes here)."""

    def agree(self, value: float) -> float:
        """A value every process of one dictionary must share (the data's spread, which sets the
        default rate), from each process's own measurement: here, the value itself."""
        return value

    # ------------------------------------------------------------------ data
    def read_batch(self, source: Any, batch_size: int, pending: list[Batch]) -> Batch:
        """This process's rows of the next global batch (``pending``: batches read early)."""
        return pending.pop(0) if pending else source.next_batch(batch_size)

    def global_rows(self, n_local: int) -> int:
        """Tokens of the global batch when this process trained on ``n_local`` rows."""
        return n_local

    # ------------------------------------------------------------------ one step
    def reduce_gradients(self, sae: SparseDictionary) -> None:
        """Make every process's gradients those of the global batch (nothing to do alone)."""

    def clip_gradients(self, sae: SparseDictionary, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), max_norm)

    def reduce_fired(self, fired: torch.Tensor) -> torch.Tensor:
        """The latents (held here) that fired anywhere on the global batch."""
        return fired

    def gather_batch(self, x: torch.Tensor, y: torch.Tensor | None) -> Batch:
        """The whole global batch (resampling must see the same rows in every process)."""
        return x, y

    def reduce_record(self, rec: dict[str, Any], run: Any, out: Any, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        """A logged step's metrics, made those of the global batch and the whole dictionary."""
        return rec

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def checkpoint_state(self, make_state: Callable[[], dict[str, Any]], source: Any) -> dict[str, Any] | None:
        """What this process writes into its checkpoint (None: it writes none)."""
        return make_state()

    def load_state(self, path: str | Path) -> dict[str, Any]:
        """The checkpoint state this process resumes from."""
        return load_checkpoint(path)

    # ------------------------------------------------------------------ the end
    def assemble(self, saes: list[SparseDictionary]) -> list[SparseDictionary]:
        """The trained dictionaries this process returns (and writes, if it writes)."""
        return saes

    def finish(self) -> None:
        """Return only when every process is done (nothing to wait for alone)."""
