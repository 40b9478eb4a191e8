"""ModelHandle: the one model adapter. A loaded model with its tokenizer, as every later stage
sees it, whatever it came wrapped in (``ModelHandle.wrap``: a handle, a HookedTransformer or a
plain Hugging Face / torch module). It lists and checks hookpoints and runs the model with hooks
that read or replace activations (``run_with_hooks``; the engines are in saekit.models.hooks)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saekit.errors import ConfigError
from saekit.models import hooks as engines


@dataclass
class ModelHandle:
    """A model ready for activations: transformer-lens (hook names) or plain HF (module paths)."""

    model: torch.nn.Module
    tokenizer: object
    kind: str  # "transformer_lens" | "hf"
    name: str
    variant: str = ""
    path: Path | None = None
    info: dict = field(default_factory=dict)  # saekit_model.json contents for saekit folders

    @classmethod
    def wrap(cls, model: Any) -> ModelHandle:
        """A handle as is; a HookedTransformer or a plain torch module wrapped in one."""
        if isinstance(model, ModelHandle):
            return model
        if hasattr(model, "model") and hasattr(model, "kind"):  # a handle-like record
            path = getattr(model, "path", None)
            return cls(
                model.model,
                getattr(model, "tokenizer", None),
                model.kind,
                str(getattr(model, "name", "") or ""),
                str(getattr(model, "variant", "") or ""),
                Path(path) if path else None,
            )
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"model must be a saekit ModelHandle, a HookedTransformer or a torch module, got {type(model).__name__}."
            )
        is_tl = hasattr(model, "hook_dict") and hasattr(model, "run_with_hooks")
        name = ""
        if is_tl:
            name = str(getattr(model.cfg, "model_name", "") or "")
        elif getattr(model, "config", None) is not None:
            name = str(getattr(model.config, "_name_or_path", "") or "")
        tokenizer = getattr(model, "tokenizer", None)
        return cls(model, tokenizer, "transformer_lens" if is_tl else "hf", name)

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def hookpoint_names(self) -> list[str]:
        """Every hookpoint the model offers: hook names (transformer-lens) or module paths (HF)."""
        if self.kind == "transformer_lens":
            return list(self.model.hook_dict)
        return [name for name, _ in self.model.named_modules() if name]

    def check_hookpoint(self, name: str) -> str:
        """Return `name` if the model has it; else raise one sentence listing close names."""
        names = self.hookpoint_names()
        if name in names:
            return name
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else f"it has e.g. {', '.join(names[:5])}"
        who = f"model {self.name!r}" if self.name else "the model"
        raise ConfigError(f"{who} has no hookpoint {name!r}; {hint}.")

    def run_with_hooks(
        self,
        tokens: torch.Tensor,
        hooks: dict[str, Callable[[torch.Tensor], torch.Tensor | None]] | None = None,
        *,
        stop_at_layer: int | None = None,
        attention_mask: torch.Tensor | None = None,
        logits: bool = True,
    ) -> torch.Tensor | None:
        """Run the model on ``tokens``; each hook reads its activation (returns None) or replaces it.

        Hooks run in forward order, so a hook on an earlier point can store what a later one reads.
        ``logits=False`` only reads: the pass stops after the last layer a hook needs
        (transformer-lens ``stop_at_layer``; other models once every hook has fired) and returns None.
        """
        if self.kind == "transformer_lens":
            return engines.run_transformer_lens(self.model, tokens, hooks or {}, stop_at_layer, logits)
        return engines.run_hf(self.model, tokens, hooks or {}, attention_mask, logits)
