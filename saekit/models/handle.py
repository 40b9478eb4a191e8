"""ModelHandle: one loaded model with its tokenizer, as every later stage sees it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from saekit.errors import ConfigError


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
        raise ConfigError(f"model {self.name!r} has no hookpoint {name!r}; {hint}.")
