"""Steer: add α · s · d at a hookpoint (every position but the first) and watch the concept and fluency.

d is a unit direction: a latent's decoder row, a neuron's axis, or the mean difference of the
activation between concept and control positions. s is the mean norm of the activation over control
positions, so α = 1 adds a vector as long as a typical activation. Per α the curve holds
target_logprob (how readily the model says the concept's continuation tokens in control text),
concept_logprob and control_loss (fluency); see saekit.editing.effects.
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.editing.concepts import ConceptSet
from saekit.editing.effects import measure
from saekit.editing.units import Units, unit_values
from saekit.errors import ConfigError

DEFAULT_ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]


def unit_direction(units: Units, unit: int) -> torch.Tensor:
    """A latent's decoder row (in activation space) or a neuron's axis, unit-normed."""
    (unit,) = units.check_units([unit])
    if units.dictionary is None:
        d = torch.zeros(units.n_units())
        d[unit] = 1.0
        return d
    d = units.dictionary
    row = (d.W_dec[unit] / d.act_scale).detach().float().cpu()
    return row / row.norm().clamp_min(1e-12)


def mean_difference_direction(units: Units, concept: ConceptSet) -> torch.Tensor:
    """mean activation at concept positions - mean at control positions, unit-normed (the hookpoint's
    activation, whatever ``units`` holds)."""
    raw = Units(units.model, units.hook)
    d = unit_values(raw, concept.concept_tokens, concept.concept_mask).mean(0) - unit_values(
        raw, concept.control_tokens, concept.control_mask
    ).mean(0)
    return d / d.norm().clamp_min(1e-12)


def activation_scale(units: Units, concept: ConceptSet) -> float:
    """Mean norm of the hookpoint's activation over control positions."""
    raw = Units(units.model, units.hook)
    return float(unit_values(raw, concept.control_tokens, concept.control_mask).norm(dim=-1).mean())


def steering_hook(direction: torch.Tensor, amount: float):
    def hook(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        new[:, 1:] += amount * direction.to(act.device, act.dtype)
        return new

    return hook


def steering_curve(
    units: Units,
    concept: ConceptSet,
    direction: torch.Tensor | int | str,
    alphas: list[float] | None = None,
    clean: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Target log-probability, concept log-probability and control loss for each α.

    direction: a tensor, a unit index (latent decoder row / neuron axis) or "mean_difference".
    clean: the unedited model's ``measure`` on this concept, if already known (the α = 0 row; saves a pass).
    """
    alphas = sorted(alphas if alphas is not None else DEFAULT_ALPHAS)
    label = direction if isinstance(direction, str) else ("tensor" if torch.is_tensor(direction) else f"unit {direction}")
    if isinstance(direction, str):
        if direction != "mean_difference":
            raise ConfigError(f"direction {direction!r} is not known; give a unit index or 'mean_difference'.")
        direction = mean_difference_direction(units, concept)
    elif not torch.is_tensor(direction):
        direction = unit_direction(units, int(direction))
    scale = activation_scale(units, concept)
    rows = [
        clean if a == 0 and clean is not None else measure(units.model, concept, {units.hook: steering_hook(direction, a * scale)})
        for a in alphas
    ]
    return {
        "kind": units.kind,
        "hook": units.hook,
        "concept": concept.name,
        "direction": label,
        "targets": concept.targets,
        "scale": scale,
        "alpha": alphas,
        "target_logprob": [r["target_logprob"] for r in rows],
        "concept_logprob": [r["concept_logprob"] for r in rows],
        "control_loss": [r["control_loss"] for r in rows],
    }
