"""Model variants: tiny transformer-lens LMs trained with interpretability regularisers,
random-weight controls, and loading of pretrained transformer-lens / Hugging Face models."""

from saekit.models.handle import ModelHandle
from saekit.models.regularisers import MagnitudePruner, neighbour_similarity, sheet_shape, topo_loss, weight_l1
from saekit.models.store import load_model
from saekit.models.train import (
    corpus_tokens,
    evaluate_lm_loss,
    mean_mlp_activation_l1,
    train_model,
    train_variants,
)

__all__ = [
    "MagnitudePruner",
    "ModelHandle",
    "corpus_tokens",
    "evaluate_lm_loss",
    "load_model",
    "mean_mlp_activation_l1",
    "neighbour_similarity",
    "sheet_shape",
    "topo_loss",
    "train_model",
    "train_variants",
    "weight_l1",
]
