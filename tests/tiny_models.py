"""A tiny random-weight transformer-lens model shared by the tests that need a real model."""

from transformer_lens import HookedTransformer

from saekit.models.build import build_model

TINY_TL = dict(
    n_layers=2,
    d_model=64,
    n_heads=4,
    d_head=16,
    d_mlp=256,
    n_ctx=32,
    d_vocab=512,
    act_fn="gelu",
    normalization_type="LN",
    seed=0,
)


def tiny_hooked_transformer(**overrides) -> HookedTransformer:
    """A seeded 2-layer HookedTransformer (d_model 64, vocab 512 unless overridden), in eval mode."""
    return build_model({**TINY_TL, **overrides}).eval()
