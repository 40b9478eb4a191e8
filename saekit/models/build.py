"""Build a transformer-lens HookedTransformer from a saekit ModelConfig."""

from __future__ import annotations

import warnings

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from saekit.config import ModelConfig


def tl_config_dict(cfg: ModelConfig) -> dict:
    """The HookedTransformerConfig arguments for cfg (saved as tl_config.json)."""
    return {
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "d_head": cfg.d_model // cfg.n_heads,
        "d_mlp": cfg.d_mlp,
        "n_ctx": cfg.n_ctx,
        "d_vocab": cfg.vocab_size,
        "act_fn": cfg.act_fn,
        "normalization_type": "LN",
        "positional_embedding_type": cfg.positional_embedding,
        "seed": cfg.seed,
        "init_weights": True,
    }


def initialise(model: HookedTransformer, cfg: ModelConfig) -> HookedTransformer:
    """Scale the residual-output projections (W_O, W_out) of a fresh model by cfg.out_init_scale.

    transformer-lens draws every matrix with std 0.8/sqrt(d_model); the attention output of a random
    model is then several times its token embedding (docs/comparing.md, "Random control")."""
    if cfg.out_init_scale != 1:
        with torch.no_grad():
            for block in model.blocks:
                block.attn.W_O.mul_(cfg.out_init_scale)
                block.mlp.W_out.mul_(cfg.out_init_scale)
    return model


def build_model(tl_args: dict) -> HookedTransformer:
    """A freshly initialised HookedTransformer (seeded by tl_args['seed'])."""
    with warnings.catch_warnings():
        # transformer-lens 3.x deprecates HookedTransformer for TransformerBridge; saekit pins <4
        # and keeps HookedTransformer because SAELens and its users do too.
        warnings.filterwarnings("ignore", message=".*HookedTransformer.*deprecated", category=DeprecationWarning)
        return HookedTransformer(HookedTransformerConfig(**tl_args))
