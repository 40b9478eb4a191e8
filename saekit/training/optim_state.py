"""The optimiser's saved state across parameter-group layouts.

Adam's state dict numbers parameters by their place in its groups, so a checkpoint written when a
dictionary had other groups (before session 9 b_dec shared the weights' group) would not load into
today's optimiser. Checkpoints name each group's parameters; the state is matched by those names.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch

from saekit.dictionaries.base import SparseDictionary
from saekit.errors import ConfigError


def group_names(sae: SparseDictionary, optimizer: torch.optim.Optimizer) -> list[list[str]]:
    """The parameter names of each of the optimiser's groups, in its order."""
    name_of = {id(p): n for n, p in sae.named_parameters()}
    return [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups]


def legacy_group_names(sae: SparseDictionary) -> list[list[str]]:
    """The groups of a checkpoint that does not name them (written before session 9): every
    parameter in one group, JumpReLU's thresholds in a second."""
    names = [n for n, _ in sae.named_parameters()]
    rest = [n for n in names if n != "threshold"]
    return [rest] + ([["threshold"]] if len(rest) < len(names) else [])


def load_optimizer_state(
    sae: SparseDictionary, optimizer: torch.optim.Optimizer, saved: dict[str, Any], saved_names: list[list[str]] | None
) -> None:
    """Load ``saved`` (an optimiser state dict whose groups hold ``saved_names``) into ``optimizer``,
    whose groups may differ: each parameter keeps its own moments and step count."""
    now = group_names(sae, optimizer)
    saved_names = saved_names if saved_names is not None else legacy_group_names(sae)
    if saved_names == now:
        optimizer.load_state_dict(saved)
        return
    old_index = {n: i for i, n in enumerate(chain(*saved_names))}
    if sorted(old_index) != sorted(chain(*now)):
        raise ConfigError(
            f"the checkpoint's optimiser holds {sorted(old_index)} but the dictionary has {sorted(chain(*now))}."
        )
    state = {i: saved["state"][old_index[n]] for i, n in enumerate(chain(*now)) if old_index[n] in saved["state"]}
    groups, start = [], 0
    for g, names in zip(optimizer.param_groups, now):
        groups.append(
            {**{k: v for k, v in g.items() if k != "params"}, "params": list(range(start, start + len(names)))}
        )
        start += len(names)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
