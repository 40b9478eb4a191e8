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


def save_tiny_model_folder(folder, model=None, **overrides):
    """A saekit model folder (weights, TL config, a 512-token BPE tokenizer) of the tiny model
    (or of ``model``, built from the same overridden config), for the CLI's --model DIR."""
    from saekit.data import load_corpus, train_tokenizer
    from saekit.models.handle import ModelHandle
    from saekit.models.store import save_model_folder

    tl_args = {**TINY_TL, **overrides}
    model = model if model is not None else build_model(tl_args).eval()
    tok = train_tokenizer(load_corpus("train")[:2], vocab_size=tl_args["d_vocab"])
    save_model_folder(
        ModelHandle(model, tok, "transformer_lens", "tiny", "baseline", folder), tl_args, {"name": "tiny", "variant": "baseline"}
    )
    return folder
