"""Editing: localise a concept in a model's neurons or a dictionary's latents, ablate it, steer with it,
and compare how editable model variants are (docs/editing.md)."""

from saekit.editing.ablate import ablation_curve
from saekit.editing.concept_spec import concept_from_spec
from saekit.editing.concepts import (
    ConceptSet,
    character_concept,
    concept_from_pattern,
    concept_from_texts,
    read_texts,
    word_family_concept,
)
from saekit.editing.editability import (
    editability,
    editability_axis,
    selectivity_auc,
    steering_efficiency,
    units_to_half,
)
from saekit.editing.effects import measure
from saekit.editing.localise import localise
from saekit.editing.planted_concepts import planted_concept
from saekit.editing.probe_effect import probe_ablation_curve
from saekit.editing.steer import mean_difference_direction, steering_curve, unit_direction
from saekit.editing.units import Units, make_units

__all__ = [
    "ConceptSet",
    "Units",
    "ablation_curve",
    "character_concept",
    "concept_from_pattern",
    "concept_from_spec",
    "concept_from_texts",
    "editability",
    "editability_axis",
    "localise",
    "make_units",
    "mean_difference_direction",
    "measure",
    "planted_concept",
    "probe_ablation_curve",
    "read_texts",
    "selectivity_auc",
    "steering_curve",
    "steering_efficiency",
    "unit_direction",
    "units_to_half",
    "word_family_concept",
]
