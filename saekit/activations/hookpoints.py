"""Hookpoints: read activations at named points of a model, many per forward pass.

transformer-lens models use their hook names (``blocks.3.hook_resid_post``,
``blocks.3.ln2.hook_normalized`` = MLP input, ``blocks.3.mlp.hook_post`` = MLP hidden,
``blocks.3.hook_mlp_out``, ``blocks.3.attn.hook_z`` flattened to ``n_heads * d_head``).
Plain Hugging Face models use module paths (``encoder.layer.3.output``); append ``:input`` to
read a module's first input instead of its output.

The forward pass stops after the last layer needed: transformer-lens via ``stop_at_layer``,
other models once the last hook has fired. The model adapter (ModelHandle) runs the hooks.
"""

from __future__ import annotations

import difflib
import re
import threading
import weakref
from typing import Any

import torch
from torch import nn

from saekit.errors import ConfigError
from saekit.models.handle import ModelHandle
from saekit.models.hooks import hf_target

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
# hook names outside the blocks that only exist at the very end of the network
_FINAL_HOOKS = ("ln_final.", "unembed.")


def transcoder_hookpoints(layer: int) -> tuple[str, str]:
    """The (MLP input, MLP output) pair a transcoder at ``layer`` maps between."""
    return (f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out")


# Hooks are state of the model object: two readers running the same model at once (two streams,
# or a stream's producer thread and an evaluation) would see each other's hooks. One lock per model.
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(module: nn.Module) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.Lock()
        return lock


def context_length(module: nn.Module) -> int | None:
    """The longest sequence the model takes (transformer-lens ``cfg.n_ctx`` or a Hugging Face
    ``config.max_position_embeddings``), None when the model does not say."""
    cfg = getattr(module, "cfg", None) or getattr(module, "config", None)
    n = getattr(cfg, "n_ctx", None) or getattr(cfg, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) else None


def check_context(module: nn.Module, length: int) -> None:
    """One sentence instead of a shape error deep in the model when sequences are too long."""
    n_ctx = context_length(module)
    if n_ctx is not None and length > n_ctx:
        raise ConfigError(
            f"the sequences are {length} tokens long but the model's context is {n_ctx} positions; "
            f"use --n-ctx {n_ctx} or less."
        )


class HookpointReader:
    """Runs a model on token batches and returns the activations at several hookpoints.

    ``reader(tokens)`` -> ``{hookpoint: Tensor [batch, pos, d]}`` (attention ``hook_z`` is
    flattened to ``[batch, pos, n_heads * d_head]``), all from one forward pass that stops at
    the last layer needed.
    """

    def __init__(self, model: Any, hookpoints: list[str] | tuple[str, ...] | str):
        self.info = ModelHandle.wrap(model)
        if isinstance(hookpoints, str):
            hookpoints = [hookpoints]
        hookpoints = list(dict.fromkeys(hookpoints))  # de-duplicate, keep order
        if not hookpoints:
            raise ConfigError("hookpoints must name at least one hookpoint.")
        self.hookpoints = hookpoints
        self.module = self.info.module
        self.stop_at_layer: int | None = None
        if self.info.kind == "transformer_lens":
            self._check_tl()
        else:
            for hp in hookpoints:
                hf_target(self.module, hp)  # fails here, naming the hookpoint, rather than mid-run

    # -- validation -------------------------------------------------------------------------
    def _check_tl(self) -> None:
        names = self.module.hook_dict
        for hp in self.hookpoints:
            if hp not in names:
                close = difflib.get_close_matches(hp, list(names), n=4, cutoff=0.6)  # typos first
                close = close or [n for n in names if n.split(".")[-1] == hp.split(".")[-1]][:4]
                hint = f" (similar: {', '.join(close)})" if close else ""
                raise ConfigError(
                    f"hookpoint {hp!r} is not a hook of this transformer-lens model{hint}; "
                    f"layers are 0..{self.module.cfg.n_layers - 1}."
                )
        self.stop_at_layer = self._stop_layer()

    def _stop_layer(self) -> int | None:
        """Blocks to run: up to the last block with a hookpoint (0 = embeddings only). None (the
        whole network) only for hooks after the blocks (ln_final, unembed)."""
        last = -1
        for hp in self.hookpoints:
            m = _BLOCK.match(hp)
            if m:
                last = max(last, int(m.group(1)))
            elif hp.startswith(_FINAL_HOOKS):
                return None
        return last + 1

    # -- running ----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_context(self.module, tokens.shape[-1])
        with _model_lock(self.module):
            return self._run(tokens, attention_mask)

    def _run(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        tl = self.info.kind == "transformer_lens"

        def save(hp: str):
            def read(act: torch.Tensor) -> None:
                if act.dim() == 4 and tl:  # hook_z / hook_result: [b, pos, heads, d_head] -> [b, pos, heads*d_head]
                    act = act.flatten(2)
                out[hp] = act.detach()

            return read

        self.info.run_with_hooks(
            tokens,
            {hp: save(hp) for hp in self.hookpoints},
            stop_at_layer=self.stop_at_layer,
            attention_mask=attention_mask,
            logits=False,
        )
        return {hp: out[hp] for hp in self.hookpoints}

    @property
    def device(self) -> torch.device:
        return self.info.device


def special_token_ids(tokenizer: Any) -> list[int]:
    """All special token ids a tokenizer knows (BOS, EOS, PAD, CLS, ...)."""
    if tokenizer is None:
        return []
    ids = getattr(tokenizer, "all_special_ids", None) or []
    return sorted({int(i) for i in ids if i is not None})


def bos_token_id(tokenizer: Any) -> int | None:
    if tokenizer is None:
        return None
    for attr in ("bos_token_id", "cls_token_id"):  # BERT-style models start with [CLS]
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return None


def keep_mask(
    tokens: torch.Tensor,
    *,
    drop_bos: bool = True,
    bos_id: int | None = None,
    exclude_ids: list[int] | tuple[int, ...] = (),
) -> torch.Tensor:
    """Bool [n_seq, pos]: which token positions get an activation row.

    BOS positions are dropped by default: their residual norms are outliers that dominate
    a dictionary's loss. With no known BOS id, position 0 of each row is taken as BOS
    (saekit packs every row to start with BOS).
    """
    keep = torch.ones_like(tokens, dtype=torch.bool)
    if drop_bos:
        if bos_id is None:
            keep[:, 0] = False
        else:
            keep &= tokens != bos_id
    if len(exclude_ids):
        keep &= ~torch.isin(tokens, torch.as_tensor(list(exclude_ids), dtype=tokens.dtype))
    return keep
