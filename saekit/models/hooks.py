"""The hook engines behind ModelHandle.run_with_hooks: transformer-lens hook names, or module
paths of any torch module through forward hooks (``path:input`` reads or replaces a module's
first input instead of its output). A hook gets the activation tensor and returns None (read)
or the tensor to use instead (replace)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from saekit.errors import ConfigError

Hook = Callable[[torch.Tensor], "torch.Tensor | None"]


class _StopForward(Exception):
    """Raised from the last hook of a reading pass so the rest of the forward is skipped."""


def run_transformer_lens(
    module: nn.Module, tokens: torch.Tensor, hooks: dict[str, Hook], stop_at_layer: int | None, logits: bool
) -> torch.Tensor | None:
    fwd_hooks = [(name, lambda act, hook, fn=fn: fn(act)) for name, fn in hooks.items()]
    return module.run_with_hooks(
        tokens, fwd_hooks=fwd_hooks, stop_at_layer=stop_at_layer, return_type="logits" if logits else None
    )


def hf_target(module: nn.Module, hookpoint: str) -> tuple[nn.Module, str]:
    """(submodule, 'output' or 'input') a module-path hookpoint names."""
    path, _, where = hookpoint.partition(":")
    where = where or "output"
    if where not in ("output", "input"):
        raise ConfigError(f"hookpoint {hookpoint!r}: the part after ':' must be 'input' or 'output'.")
    try:
        return module.get_submodule(path), where
    except AttributeError:
        raise ConfigError(
            f"hookpoint {hookpoint!r} is not a module path of this model (see model.named_modules())."
        ) from None


def _first_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, (tuple, list)):
        return value[0]
    if hasattr(value, "last_hidden_state"):
        return value.last_hidden_state
    return value


def _replaced(value: Any, new: torch.Tensor) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)((new, *value[1:]))
    if hasattr(value, "last_hidden_state"):
        value.last_hidden_state = new
        return value
    return new


def _hf_hook(fn: Hook, where: str, stop: Callable[[], bool]):
    def call(value: Any) -> Any:
        new = fn(_first_tensor(value))
        if stop():
            raise _StopForward
        return None if new is None else _replaced(value, new)

    if where == "input":
        return lambda mod, args: call(args)
    return lambda mod, args, output: call(output)


def run_hf(
    module: nn.Module,
    tokens: torch.Tensor,
    hooks: dict[str, Hook],
    attention_mask: torch.Tensor | None,
    logits: bool,
) -> torch.Tensor | None:
    """A Hugging Face (or any torch) model with forward hooks on module paths. A reading pass
    (``logits=False``) calls ``module(input_ids=, attention_mask=)`` and stops once every hook
    has fired; a full pass calls ``module(tokens)`` and returns its logits."""
    fired: set[str] = set()
    handles = []
    try:
        for name, fn in hooks.items():
            sub, where = hf_target(module, name)

            def stop(name: str = name) -> bool:
                fired.add(name)
                return not logits and len(fired) == len(hooks)

            hook = _hf_hook(fn, where, stop)
            handles.append(sub.register_forward_pre_hook(hook) if where == "input" else sub.register_forward_hook(hook))
        if logits:
            out = module(tokens)
            return out.logits if hasattr(out, "logits") else out
        try:
            mask = attention_mask if attention_mask is not None else torch.ones_like(tokens)
            module(input_ids=tokens, attention_mask=mask)
        except _StopForward:
            pass
        missing = [name for name in hooks if name not in fired]
        if missing:
            raise ConfigError(f"hookpoint(s) {', '.join(missing)} did not run in the model's forward pass.")
        return None
    finally:
        for h in handles:
            h.remove()
