"""Hookpoints: read activations at named points of a model, many per forward pass.

transformer-lens models use their hook names (``blocks.3.hook_resid_post``,
``blocks.3.ln2.hook_normalized`` = MLP input, ``blocks.3.mlp.hook_post`` = MLP hidden,
``blocks.3.hook_mlp_out``, ``blocks.3.attn.hook_z`` flattened to ``n_heads * d_head``).
Plain Hugging Face models use module paths (``encoder.layer.3.output``); append ``:input`` to
read a module's first input instead of its output.

The forward pass stops after the last layer needed: transformer-lens via ``stop_at_layer``,
other models by raising a private exception from the last hook that fires.
"""

from __future__ import annotations

import difflib
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from saekit.errors import ConfigError

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
# hook names outside the blocks that only exist at the very end of the network
_FINAL_HOOKS = ("ln_final.", "unembed.")


def transcoder_hookpoints(layer: int) -> tuple[str, str]:
    """The (MLP input, MLP output) pair a transcoder at ``layer`` maps between."""
    return (f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out")


@dataclass
class ModelInfo:
    """What the activation layer needs to know about a model, whatever it came wrapped in."""

    module: nn.Module
    kind: str  # "transformer_lens" | "hf"
    tokenizer: Any = None
    name: str = ""
    variant: str = ""
    path: str = ""


def model_info(model: Any) -> ModelInfo:
    """Accept a saekit ModelHandle, a HookedTransformer or a plain torch module."""
    if hasattr(model, "model") and hasattr(model, "kind"):  # saekit.models.ModelHandle
        return ModelInfo(
            module=model.model,
            kind=model.kind,
            tokenizer=getattr(model, "tokenizer", None),
            name=str(getattr(model, "name", "") or ""),
            variant=str(getattr(model, "variant", "") or ""),
            path=str(getattr(model, "path", "") or ""),
        )
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model must be a saekit ModelHandle, a HookedTransformer or a torch module, got {type(model).__name__}."
        )
    is_tl = hasattr(model, "hook_dict") and hasattr(model, "run_with_hooks")
    name = ""
    if is_tl:
        name = str(getattr(model.cfg, "model_name", "") or "")
    elif getattr(model, "config", None) is not None:
        name = str(getattr(model.config, "_name_or_path", "") or "")
    return ModelInfo(
        module=model,
        kind="transformer_lens" if is_tl else "hf",
        tokenizer=getattr(model, "tokenizer", None),
        name=name,
    )


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


class _StopForward(Exception):
    """Raised from the last hook of a plain torch model so the rest of the forward is skipped."""


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
        self.info = model_info(model)
        if isinstance(hookpoints, str):
            hookpoints = [hookpoints]
        hookpoints = list(dict.fromkeys(hookpoints))  # de-duplicate, keep order
        if not hookpoints:
            raise ConfigError("hookpoints must name at least one hookpoint.")
        self.hookpoints = hookpoints
        self.module = self.info.module
        if self.info.kind == "transformer_lens":
            self._check_tl()
        else:
            self._targets = {hp: self._resolve_module(hp) for hp in hookpoints}

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

    def _resolve_module(self, hp: str) -> tuple[nn.Module, str]:
        path, _, where = hp.partition(":")
        where = where or "output"
        if where not in ("output", "input"):
            raise ConfigError(f"hookpoint {hp!r}: the part after ':' must be 'input' or 'output'.")
        try:
            sub = self.module.get_submodule(path)
        except AttributeError:
            raise ConfigError(
                f"hookpoint {hp!r} is not a module path of this model (see model.named_modules())."
            ) from None
        return sub, where

    # -- running ----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_context(self.module, tokens.shape[-1])
        with _model_lock(self.module):
            if self.info.kind == "transformer_lens":
                return self._run_tl(tokens)
            return self._run_hf(tokens, attention_mask)

    def _run_tl(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}

        def save(act: torch.Tensor, hook) -> None:
            if act.dim() == 4:  # hook_z / hook_result: [b, pos, heads, d_head] -> [b, pos, heads*d_head]
                act = act.flatten(2)
            out[hook.name] = act.detach()

        self.module.run_with_hooks(
            tokens,
            fwd_hooks=[(hp, save) for hp in self.hookpoints],
            stop_at_layer=self.stop_at_layer,
            return_type=None,
        )
        return {hp: out[hp] for hp in self.hookpoints}

    def _run_hf(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        handles = []
        n_wanted = len(self.hookpoints)

        def make_hook(hp: str, where: str):
            def grab(value: Any) -> None:
                if isinstance(value, (tuple, list)):
                    value = value[0]
                elif hasattr(value, "last_hidden_state"):
                    value = value.last_hidden_state
                out[hp] = value.detach()
                if len(out) == n_wanted:
                    raise _StopForward

            if where == "input":
                return lambda mod, args: grab(args)
            return lambda mod, args, output: grab(output)

        for hp, (sub, where) in self._targets.items():
            hook = make_hook(hp, where)
            if where == "input":
                handles.append(sub.register_forward_pre_hook(hook))
            else:
                handles.append(sub.register_forward_hook(hook))
        try:
            if attention_mask is None:
                attention_mask = torch.ones_like(tokens)
            self.module(input_ids=tokens, attention_mask=attention_mask)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = [hp for hp in self.hookpoints if hp not in out]
        if missing:
            raise ConfigError(f"hookpoint(s) {', '.join(missing)} did not run in the model's forward pass.")
        return {hp: out[hp] for hp in self.hookpoints}

    @property
    def device(self) -> torch.device:
        try:
            return next(self.module.parameters()).device
        except StopIteration:
            return torch.device("cpu")


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
