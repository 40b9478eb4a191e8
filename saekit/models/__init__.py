"""Model variants: tiny transformer-lens LMs trained with interpretability regularisers,
random-weight controls, and loading of pretrained transformer-lens / Hugging Face models.

``ModelHandle`` (handle.py) is the one model adapter every later stage reads hooks through.
Public names are imported on first use, so that reading activations through a ModelHandle does
not import transformer-lens (which model building and training need)."""

from __future__ import annotations

from saekit.lazy import lazy_getattr

_EXPORTS = {
    "MagnitudePruner": "saekit.models.regularisers",
    "ModelHandle": "saekit.models.handle",
    "corpus_tokens": "saekit.models.train",
    "evaluate_lm_loss": "saekit.models.train",
    "load_model": "saekit.models.store",
    "mean_mlp_activation_l1": "saekit.models.train",
    "neighbour_similarity": "saekit.models.regularisers",
    "sheet_shape": "saekit.models.regularisers",
    "topo_loss": "saekit.models.regularisers",
    "train_model": "saekit.models.train",
    "train_variants": "saekit.models.train",
    "weight_l1": "saekit.models.regularisers",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
