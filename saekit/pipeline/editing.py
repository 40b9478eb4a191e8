"""The editability axes of a comparison (``saekit compare --concept SPEC``): per dictionary, localise the
concept among its latents, zero-ablate the top n (n = 0, 1, 2, 4, ... up to ``n_max``) and steer with the
top one; per model, the same on the MLP neurons (``hook_post``) of a dictionary's layer. Three measures
each (formulas in saekit.editing.editability), every one its own verdict axis:

* ``editability_units_to_half``: units to remove half the concept probability; lower is better. Not
  reached within the n tried, it counts as (largest n tried) + 1, a lower bound (``_reached`` says which);
* ``editability_selectivity_auc``: area under the selectivity curve (nats), higher is better;
* ``editability_steering_efficiency``: steering gain within 0.1 nats of control loss (nats), higher is better;
* ``neuron_editability_*``: the same three on the model's own MLP neurons, one value per model.

``editability`` is the headline measure (``EditSettings.measure``, ``--edit-measure``): the same numbers
as its ``editability_<measure>`` axis, kept for compatibility; it is not tested twice.
The first dictionary seed of each model also keeps its curves for the report.
Transcoders are skipped (editing works on autoencoders at one hookpoint): their rows get no value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from saekit.editing.editability import HIGHER_IS_BETTER, MEASURES
from saekit.errors import ConfigError

__all__ = ["AXES", "HIGHER_IS_BETTER", "MEASURES", "NEURON_AXES", "EditSettings", "dictionary_editability"]
AXES = {m: f"editability_{m}" for m in MEASURES}  # measure -> latent axis (per dictionary)
NEURON_AXES = {m: f"neuron_editability_{m}" for m in MEASURES}  # measure -> neuron axis (per model)
REACHED = "_reached"  # suffix of the flag beside a units_to_half value: False = censored at n_max + 1


@dataclass
class EditSettings:
    """What ``saekit compare --concept`` measures, and on how much text. ``measure``: the headline."""

    concept: str
    control: str | None = None
    measure: str = "selectivity_auc"
    split: str = "validation"
    max_texts: int = 100
    n_ctx: int = 64
    n_max: int = 8
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ConfigError(f"edit measure {self.measure!r} is not known; expected one of {', '.join(MEASURES)}.")


def _concept(handle: Any, s: EditSettings, cache: dict) -> Any:
    from saekit.editing.concept_spec import concept_from_spec

    key = id(handle.tokenizer)
    if key not in cache:
        n_ctx = min(s.n_ctx, int(getattr(handle.model.cfg, "n_ctx", s.n_ctx)))
        cache[key] = concept_from_spec(s.concept, handle.tokenizer, n_ctx, s.control, s.split, s.max_texts)
    return cache[key]


def unit_editability(units: Any, cs: Any, s: EditSettings) -> tuple[dict[str, float], bool, dict[str, Any]]:
    """({measure: value} of one set of units, whether units_to_half was reached, the curves behind them)."""
    from saekit.editing.ablate import ablation_curve, default_ns
    from saekit.editing.editability import selectivity_auc, steering_efficiency, units_to_half
    from saekit.editing.localise import localise
    from saekit.editing.steer import steering_curve

    ranking = localise(units, cs, top=1, contexts=0)["ranking"]
    ablation = ablation_curve(units, cs, ranking, default_ns(min(s.n_max, len(ranking))), "zero")
    steering = steering_curve(units, cs, ranking[0], list(s.alphas), clean=ablation["clean"])
    half = units_to_half(ablation)
    reached = not math.isnan(half)
    values = {
        "units_to_half": half if reached else float(ablation["n"][-1] + 1),
        "selectivity_auc": selectivity_auc(ablation),
        "steering_efficiency": steering_efficiency(steering),
    }
    keep_a = ("n", "concept_drop", "prob_removed", "collateral", "selectivity")
    keep_s = ("alpha", "target_logprob", "concept_logprob", "control_loss")
    curves = {
        "ablation": {k: ablation[k] for k in keep_a},
        "steering": {k: steering[k] for k in keep_s},
        "top_unit": int(ranking[0]),
        "values": values,
        "units_to_half_reached": reached,
    }
    return values, reached, curves


def _axis_values(values: dict[str, float], reached: bool, names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {names[m]: v for m, v in values.items()}
    out[names["units_to_half"] + REACHED] = reached
    return out


def dictionary_editability(
    sae: Any, handle: Any, s: EditSettings, cache: dict, curves: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(axis values: the three ``editability_*``, the reached flag and the headline ``editability``;
    the curves when ``curves``); (None, None) for a transcoder."""
    from saekit.editing.units import make_units

    if getattr(sae.cfg, "transcoder", False):
        return None, None
    values, reached, kept = unit_editability(make_units(handle, None, sae), _concept(handle, s, cache), s)
    axes = {**_axis_values(values, reached, AXES), "editability": values[s.measure]}
    return axes, (kept if curves else None)


def neuron_editability(handle: Any, hook: str, s: EditSettings, cache: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the three ``neuron_editability_*`` values and the reached flag, the curves) of the model's neurons at
    ``hook`` (e.g. ``blocks.0.mlp.hook_post``); computed once per model and hook."""
    from saekit.editing.units import make_units

    key = ("neurons", id(handle), hook)
    if key not in cache:
        values, reached, kept = unit_editability(make_units(handle, hook), _concept(handle, s, cache), s)
        cache[key] = (_axis_values(values, reached, NEURON_AXES), {**kept, "hook": hook})
    return cache[key]
