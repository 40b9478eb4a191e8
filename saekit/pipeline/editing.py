"""The ``editability`` axis of a comparison (``saekit compare --concept SPEC``): per dictionary, localise
the concept among its latents, then ablate the top ones (selectivity AUC) or steer with the top one
(steering efficiency); see saekit.editing.editability for the formulas. The first dictionary seed
of each model also keeps its curves for the report.

Transcoders are skipped (editing works on autoencoders at one hookpoint): their rows get no value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from saekit.errors import ConfigError

MEASURES = ("selectivity_auc", "steering_efficiency")  # both: higher is more editable


@dataclass
class EditSettings:
    """What ``saekit compare --concept`` measures, and on how much text."""

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


def dictionary_editability(
    sae: Any, handle: Any, s: EditSettings, cache: dict, curves: bool
) -> tuple[float | None, dict[str, Any] | None]:
    """(editability value, {"ablation": curve, "steering": curve} when ``curves``); (None, None) for a transcoder."""
    from saekit.editing.ablate import ablation_curve, default_ns
    from saekit.editing.editability import selectivity_auc, steering_efficiency
    from saekit.editing.localise import localise
    from saekit.editing.steer import steering_curve
    from saekit.editing.units import make_units

    if getattr(sae.cfg, "transcoder", False):
        return None, None
    cs = _concept(handle, s, cache)
    units = make_units(handle, None, sae)
    ranking = localise(units, cs, top=1, contexts=0)["ranking"]
    ablation = steering = None
    if s.measure == "selectivity_auc" or curves:
        ablation = ablation_curve(units, cs, ranking, default_ns(min(s.n_max, len(ranking))), "zero")
    if s.measure == "steering_efficiency" or curves:
        steering = steering_curve(units, cs, ranking[0], list(s.alphas))
    value = selectivity_auc(ablation) if s.measure == "selectivity_auc" else steering_efficiency(steering)
    if not curves:
        return value, None
    keep_a = ("n", "concept_drop", "prob_removed", "collateral", "selectivity")
    keep_s = ("alpha", "target_logprob", "concept_logprob", "control_loss")
    return value, {
        "ablation": {k: ablation[k] for k in keep_a},
        "steering": {k: steering[k] for k in keep_s},
        "top_unit": int(ranking[0]),
    }
