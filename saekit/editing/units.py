"""Units that can be localised and edited: a hookpoint's neurons, or a dictionary's latents there.

Neurons are the coordinates of the activation at a hookpoint (MLP ``hook_post`` for MLP neurons).
Latents are a sparse dictionary's codes of that activation; editing them replaces the activation by
``decode(z') + (x - decode(z))``: the reconstruction from the edited codes plus the dictionary's
error term, so that only the chosen latents change what the model sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from saekit.errors import ConfigError, DataError
from saekit.evaluation.splice import run_logits, split_hooks
from saekit.models.handle import ModelHandle


@dataclass
class Units:
    """The units at one hookpoint of a model: its neurons (dictionary None) or a dictionary's latents."""

    model: Any  # ModelHandle or HookedTransformer
    hook: str
    dictionary: torch.nn.Module | None = None

    @property
    def kind(self) -> str:
        return "latent" if self.dictionary is not None else "neuron"

    def codes(self, act: torch.Tensor) -> torch.Tensor:
        """Unit values [..., n_units] of activations [..., d]."""
        if self.dictionary is None:
            return act
        flat = act.reshape(-1, act.shape[-1]).to(self.dictionary.W_enc.dtype)
        return self.dictionary.encode(flat).reshape(*act.shape[:-1], -1)

    def reconstruct(self, z: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Dictionary output from codes z for inputs act (the skip path of a skip dictionary included)."""
        d = self.dictionary
        flat = z.reshape(-1, z.shape[-1])
        xs = d.scale_in(act.reshape(-1, act.shape[-1]))
        skip = d.skip_path(xs)
        out = d.decode(flat) + (skip / d.act_scale if torch.is_tensor(skip) else 0.0)
        return out.reshape(act.shape).to(act.dtype)

    def n_units(self) -> int:
        if self.dictionary is not None:
            return int(self.dictionary.W_dec.shape[0])
        return _hook_width(self.model, self.hook)

    def check_units(self, units: list[int] | torch.Tensor) -> list[int]:
        """The unit indices as a list, or one sentence when one is out of range."""
        units = [int(u) for u in (units.tolist() if torch.is_tensor(units) else units)]
        n = self.n_units()
        bad = [u for u in units if not 0 <= u < n]
        if bad:
            raise ConfigError(f"unit index {bad[0]} is out of range: the {self.hook} {self.kind}s are numbered 0 to {n - 1}.")
        return units

    def edit_hook(self, edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A forward hook that applies ``edit`` to the unit values and writes the result back
        (position 0 left as it is: the BOS token dictionaries are not trained on)."""

        def hook(act: torch.Tensor) -> torch.Tensor:
            if self.dictionary is None:
                new = edit(act.clone())
            else:
                z = self.codes(act)
                err = act - self.reconstruct(z, act)
                new = self.reconstruct(edit(z.clone()), act) + err
            new[:, 0] = act[:, 0]
            return new

        return hook


def make_units(model: Any, hook: str | None = None, dictionary: torch.nn.Module | None = None) -> Units:
    """Units at ``hook`` (default: the dictionary's hook_name), checked against the model's hookpoints."""
    if dictionary is not None:
        if getattr(dictionary.cfg, "transcoder", False):
            raise ConfigError("editing works on autoencoders at one hookpoint; a transcoder's latents are not supported yet.")
        hook, _ = split_hooks(dictionary, hook, None)
        dictionary.eval()
    if not hook:
        raise ConfigError("a hookpoint is needed for neurons, e.g. blocks.0.mlp.hook_post.")
    ModelHandle.wrap(model).check_hookpoint(hook)
    if dictionary is not None:
        width = _hook_width(model, hook)
        if width != dictionary.cfg.d_in:
            raise ConfigError(f"the dictionary reads {dictionary.cfg.d_in}-dim activations but {hook} has {width}.")
    return Units(model, hook, dictionary)


def _hook_width(model: Any, hook: str) -> int:
    seen: dict[str, torch.Tensor] = {}
    toks = torch.zeros(1, 2, dtype=torch.long, device=ModelHandle.wrap(model).device)
    run_logits(model, toks, {hook: lambda a: seen.__setitem__("a", a)})
    return int(seen["a"].shape[-1])


@torch.no_grad()
def unit_values(units: Units, tokens: torch.Tensor, mask: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Unit values [n_masked_positions, n_units] (float32, CPU) at the masked positions of ``tokens``."""
    if tokens.shape[0] == 0:
        raise DataError("no token to read unit values from.")
    device = ModelHandle.wrap(units.model).device
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        batch, m = tokens[start : start + batch_size].to(device), mask[start : start + batch_size].to(device)
        seen: dict[str, torch.Tensor] = {}
        run_logits(units.model, batch, {units.hook: lambda a, seen=seen: seen.__setitem__("a", a.detach())})
        out.append(units.codes(seen["a"])[m].float().cpu())
    return torch.cat(out)
