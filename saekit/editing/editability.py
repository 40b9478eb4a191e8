"""Editability across variants: one number per (model, dictionary), for the verdict table.

From an ablation curve (saekit.editing.ablate) and a steering curve (saekit.editing.steer):

* units_to_half = the smallest n with prob_removed(n) ≥ 0.5 (NaN when no n tried gets there); lower is better;
* selectivity_auc = the mean of selectivity(n) = concept_drop(n) - collateral(n) over the curve's n
  (trapezoid rule on log2(1 + n), so each doubling of n weighs the same); nats, higher is better;
* steering_efficiency = the largest rise of target_logprob over its α = 0 value among the α whose
  control loss rose by at most ``budget`` nats (0 when none did); nats, higher is better.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from saekit.editing.ablate import ablation_curve, default_ns
from saekit.editing.concepts import ConceptSet
from saekit.editing.localise import localise
from saekit.editing.steer import steering_curve
from saekit.editing.units import make_units
from saekit.errors import ConfigError

MEASURES = ("selectivity_auc", "units_to_half", "steering_efficiency")
HIGHER_IS_BETTER = {"selectivity_auc": True, "units_to_half": False, "steering_efficiency": True}


def units_to_half(curve: Mapping[str, Any]) -> float:
    for n, removed in zip(curve["n"], curve["prob_removed"]):
        if removed >= 0.5:
            return float(n)
    return math.nan


def selectivity_auc(curve: Mapping[str, Any]) -> float:
    x = np.log2(1 + np.asarray(curve["n"], dtype=float))
    y = np.asarray(curve["selectivity"], dtype=float)
    if len(x) < 2:
        return float(y[0]) if len(y) else math.nan
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def steering_efficiency(curve: Mapping[str, Any], budget: float = 0.1) -> float:
    a = list(curve["alpha"])
    if 0.0 not in a:
        raise ConfigError("steering efficiency needs α = 0 among the steering curve's alphas.")
    i0 = a.index(0.0)
    base_t, base_l = curve["target_logprob"][i0], curve["control_loss"][i0]
    gains = [t - base_t for t, loss in zip(curve["target_logprob"], curve["control_loss"]) if loss - base_l <= budget]
    return float(max([0.0, *gains]))


def editability(
    model: Any,
    dictionary: Any,
    concept: ConceptSet | Callable[[Any], ConceptSet],
    measure: str = "selectivity_auc",
    hook: str | None = None,
    n_max: int = 16,
    mode: str = "zero",
    alphas: list[float] | None = None,
    budget: float = 0.1,
) -> float:
    """One editability number for a model (and a dictionary's latents, or its neurons at ``hook``
    when dictionary is None): localise the concept, then ablate or steer (see the module doc).

    concept: a ConceptSet, or a function of the model returning one (a tokenizer per model)."""
    if measure not in MEASURES:
        raise ConfigError(f"editability measure {measure!r} is not known; expected one of {', '.join(MEASURES)}.")
    cs = concept(model) if callable(concept) else concept
    units = make_units(model, hook, dictionary)
    ranking = localise(units, cs, top=1, contexts=0)["ranking"]
    if measure == "steering_efficiency":
        return steering_efficiency(steering_curve(units, cs, ranking[0], alphas), budget)
    curve = ablation_curve(units, cs, ranking, default_ns(min(n_max, len(ranking))), mode)
    return units_to_half(curve) if measure == "units_to_half" else selectivity_auc(curve)


def editability_axis(
    models: Mapping[Any, Any],
    dictionaries: Mapping[Any, Mapping[Any, Any]] | None,
    concept: ConceptSet | Callable[[Any], ConceptSet],
    measure: str = "selectivity_auc",
    **kwargs: Any,
) -> dict[Any, dict[Any, float]]:
    """{model_seed: {dict_seed: editability}} for saekit.pipeline.stats.verdicts_for (axis "editability";
    pass higher_is_better={"editability": HIGHER_IS_BETTER[measure]}). dictionaries None: neurons at
    kwargs["hook"], one value per model as {model_seed: {0: value}}."""
    out: dict[Any, dict[Any, float]] = {}
    for m_seed, model in models.items():
        dicts = dictionaries[m_seed] if dictionaries is not None else {0: None}
        out[m_seed] = {d_seed: editability(model, d, concept, measure, **kwargs) for d_seed, d in dicts.items()}
    return out
