"""A tiny 1-layer model trained on corpus text where a trigger token is always followed by a fixed
token (the planted pattern the editing tests localise, ablate and steer), and a top-k SAE on its
final residual stream."""

from __future__ import annotations

import random

import torch

from saekit.data import load_corpus, pack_tokens, train_tokenizer
from saekit.models.build import build_model

TRIGGER, CONT = "<trigger>", "<cont>"
HOOK_RESID = "blocks.0.hook_resid_post"
HOOK_NEURONS = "blocks.0.mlp.hook_post"
MODEL_CFG = dict(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32, d_vocab=512,
                 act_fn="gelu", normalization_type="LN", seed=0)


def planted_texts(texts: list[str], rate: float = 0.03, seed: int = 0) -> list[str]:
    """Insert TRIGGER CONT after a fraction ``rate`` of the words (and nowhere else)."""
    rng = random.Random(seed)
    out = []
    for t in texts:
        words = t.split(" ")
        out.append(" ".join(w + (f" {TRIGGER}{CONT}" if rng.random() < rate else "") for w in words))
    return out


def planted_tokenizer():
    tok = train_tokenizer(load_corpus("train")[:2], vocab_size=510)
    tok.add_tokens([TRIGGER, CONT])
    return tok


def train_planted_model(steps: int = 200, seed: int = 0):
    """(model, tokenizer, training tokens) of the 1-layer model trained on planted corpus text."""
    from saekit.models.handle import ModelHandle

    torch.manual_seed(seed)
    tok = planted_tokenizer()
    model = build_model({**MODEL_CFG, "d_vocab": len(tok), "seed": seed})
    tokens = pack_tokens(planted_texts(load_corpus("train")[:3]), tok, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = tokens[torch.randint(len(tokens), (32,), generator=g)]
        loss = model(batch, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return ModelHandle(model, tok, "transformer_lens", "planted", "baseline"), tokens
