"""Ablate the top-n units of a ranking and measure the concept effect against the collateral effect.

For n units ablated (zero: set to 0; mean: set to their mean over control positions):

* concept_drop(n) = concept_logprob(0) - concept_logprob(n) (nats; the concept effect);
* prob_removed(n) = 1 - concept_prob(n) / concept_prob(0) (fraction of the concept probability removed);
* collateral(n) = control_loss(n) - control_loss(0) (nats; the damage elsewhere);
* selectivity(n) = concept_drop(n) - collateral(n).
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.editing.concepts import ConceptSet
from saekit.editing.effects import measure
from saekit.editing.units import Units, unit_values
from saekit.errors import ConfigError

MODES = ("zero", "mean")


def default_ns(n_max: int) -> list[int]:
    """0, 1, 2, 4, 8, ... up to n_max (n_max included)."""
    ns, n = [0], 1
    while n < n_max:
        ns.append(n)
        n *= 2
    return ns + [n_max] if n_max > 0 else ns


def ablation_hook(units: Units, chosen: list[int], mode: str = "zero", means: torch.Tensor | None = None):
    """A hook that sets the chosen units to 0 (zero) or to ``means[unit]`` (mean)."""
    if mode not in MODES:
        raise ConfigError(f"ablation mode {mode!r} is not known; expected one of {', '.join(MODES)}.")
    idx = torch.tensor(units.check_units(chosen), dtype=torch.long)

    def edit(v: torch.Tensor) -> torch.Tensor:
        if len(idx):
            i = idx.to(v.device)
            v[..., i] = 0.0 if mode == "zero" else means.to(v.device, v.dtype)[i]
        return v

    return units.edit_hook(edit)


def control_means(units: Units, concept: ConceptSet) -> torch.Tensor:
    """Mean unit values over the control positions (the mean-ablation values)."""
    return unit_values(units, concept.control_tokens, concept.control_mask).mean(0)


def ablation_curve(
    units: Units, concept: ConceptSet, ranking: list[int], ns: list[int] | None = None, mode: str = "zero"
) -> dict[str, Any]:
    """Concept and collateral effects of ablating the first n units of ``ranking``, for each n in ``ns``."""
    ns = sorted(set(ns if ns is not None else default_ns(min(64, len(ranking)))))
    if ns and ns[-1] > len(ranking):
        raise ConfigError(f"cannot ablate {ns[-1]} units: the ranking holds {len(ranking)}.")
    units.check_units(ranking[: ns[-1]] if ns else [])
    means = control_means(units, concept) if mode == "mean" else None
    clean = measure(units.model, concept)
    # n = 0 changes no unit: the clean pass itself (the hook would only round-trip it through the dictionary)
    rows = [clean if n == 0 else measure(units.model, concept, {units.hook: ablation_hook(units, ranking[:n], mode, means)}) for n in ns]
    drop = [clean["concept_logprob"] - r["concept_logprob"] for r in rows]
    coll = [r["control_loss"] - clean["control_loss"] for r in rows]
    return {
        "kind": units.kind,
        "hook": units.hook,
        "mode": mode,
        "concept": concept.name,
        "units": [int(u) for u in ranking[: ns[-1]]] if ns else [],
        "n": ns,
        "clean": clean,
        "concept_logprob": [r["concept_logprob"] for r in rows],
        "concept_prob": [r["concept_prob"] for r in rows],
        "control_loss": [r["control_loss"] for r in rows],
        "concept_drop": drop,
        "prob_removed": [1 - r["concept_prob"] / clean["concept_prob"] for r in rows],
        "collateral": coll,
        "selectivity": [d - c for d, c in zip(drop, coll)],
    }
