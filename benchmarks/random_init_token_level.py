"""How token-level is a random-weights model's MLP output? (why the random control is not `worse` on abstractness)

For transformer-lens models at their initialisation (the random control), per architecture option, the
median over dimensions of saekit's abstractness (1 − R² from the current token id, split-half, clipped
to [0, 1]) of the raw activation at the last layer's ``hook_mlp_out`` and ``hook_resid_post``, and of a
sparse proxy for SAE latents (64 random directions, each ReLU'd above its 90th percentile). No training:
only the option changes. ``W_O ×s`` scales the attention output projections after the initialisation.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/random_init_token_level.py --n-ctx 32 128

Numbers in docs/comparing.md ("Random control") come from it.
"""

from __future__ import annotations

import argparse
import warnings

import torch

ARCHS = {  # name -> (HookedTransformerConfig overrides, W_O scale)
    "standard (learned W_pos)": ({}, 1.0),
    "rotary": ({"positional_embedding_type": "rotary"}, 1.0),
    "rotary, parallel attention+MLP": ({"positional_embedding_type": "rotary", "parallel_attn_mlp": True}, 1.0),
    "rotary, W_O ×0.3": ({"positional_embedding_type": "rotary"}, 0.3),
    "rotary, W_O ×0.1": ({"positional_embedding_type": "rotary"}, 0.1),
    "standard, W_O ×0.1": ({}, 0.1),
    "rotary, 2 layers": ({"positional_embedding_type": "rotary", "n_layers": 2}, 1.0),
    "rotary, 2 layers, d_model 128 (demo size)": (
        {"positional_embedding_type": "rotary", "n_layers": 2, "d_model": 128, "d_head": 32, "n_heads": 4, "d_mlp": 512},
        1.0,
    ),
}


def measure(n_ctx: int, overrides: dict, w_o_scale: float, tokens: torch.Tensor) -> list[float]:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from saekit.evaluation.abstractness import abstractness

    args = dict(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=128, n_ctx=n_ctx, d_vocab=4096, act_fn="gelu",
                normalization_type="LN", positional_embedding_type="standard", seed=0, init_weights=True)  # fmt: skip
    args.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(HookedTransformerConfig(**args)).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_O.mul_(w_o_scale)
        last = args["n_layers"] - 1
        hooks = [f"blocks.{last}.hook_mlp_out", f"blocks.{last}.hook_resid_post"]
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks)
    ids = tokens[:, 1:].reshape(-1)  # BOS left out, as in a comparison
    gen = torch.Generator().manual_seed(1)
    out = []
    for h in hooks:
        x = cache[h][:, 1:].reshape(-1, args["d_model"])
        proj = x @ torch.randn(args["d_model"], 64, generator=gen)
        latents = torch.relu(proj - proj.quantile(0.9, dim=0))
        out += [abstractness(x, ids)["median_current"], abstractness(latents, ids)["median_current"]]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-ctx", type=int, nargs="+", default=[32])
    p.add_argument("--tokens", type=int, default=32768, help="held-out tokens per context length")
    args = p.parse_args(argv)
    from saekit.data import default_tokenizer, load_corpus, pack_tokens

    tok = default_tokenizer()
    print("| n_ctx | random model | mlp_out raw | mlp_out sparse | resid_post raw | resid_post sparse |")
    print("|---|---|---|---|---|---|")
    for n_ctx in args.n_ctx:
        tokens = pack_tokens(load_corpus("validation")[:1], tok, n_ctx, max_rows=args.tokens // n_ctx)
        for name, (overrides, scale) in ARCHS.items():
            vals = measure(n_ctx, overrides, scale, tokens)
            print(f"| {n_ctx} | {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |", flush=True)


if __name__ == "__main__":
    main()
