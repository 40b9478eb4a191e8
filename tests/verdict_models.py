"""Tiny trained model seeds shared by the verdict tests (trained once per session, see conftest.py).

Four baseline model seeds (0, 1 in the group ``baseline``; 2, 3 in ``baseline_b`` through ``--group``,
for the null test) and two of the random-weights control, the tiny settings of tests/test_compare.py.
"""

from pathlib import Path

from saekit.config import ModelConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.models import train_model

TINY_MODEL = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=128, n_ctx=32, steps=400, batch_size=8, device="cpu")
# the random control's model family (baseline and random alike): the random model's stream is its token
# embedding (docs/comparing.md, "Random control: which definition")
TOKEN_LEVEL = {"positional_embedding": "rotary", "out_init_scale": 0.1}
MODELS = [("baseline", 0, None), ("baseline", 1, None), ("baseline", 2, "baseline_b"), ("baseline", 3, "baseline_b"),
          ("random", 0, None), ("random", 1, None)]  # fmt: skip


def train_verdict_models(root: Path) -> dict[str, Path]:
    """Folder name (``baseline0`` ... ``random1``) -> its trained tiny model folder."""
    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[:1], tok, 32, max_rows=160)
    val = pack_tokens(load_corpus("validation")[:1], tok, 32, max_rows=16)
    out = {}
    for variant, seed, group in MODELS:
        folder = root / f"{variant}{seed}"
        cfg = TINY_MODEL.replace(variant=variant, seed=seed, group=group)
        train_model(cfg, folder, tokenizer=tok, data=(train, val), progress=False)
        out[folder.name] = folder
    return out


def train_control_models(root: Path, n_seeds: int = 3, **changes) -> dict[str, Path]:
    """Three baseline and three random-weights model seeds for the random-control test (``baseline0`` ...
    ``random2``): TINY_MODEL trained on 3200 distinct sequences (about 100k tokens, each seen about once in
    400 steps of 8). On the 160 sequences of ``train_verdict_models`` the baselines memorise their data
    (train loss 2.7, held-out 7.9 nats, no better than the random control's 8.6); here they reach 6.5.
    ``changes`` (ModelConfig fields, e.g. ``positional_embedding="rotary", out_init_scale=0.1``) apply to
    both groups: the control is the same model family, untrained."""
    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[:2], tok, 32, max_rows=3200)
    val = pack_tokens(load_corpus("validation")[:1], tok, 32, max_rows=16)
    out = {}
    for variant in ("baseline", "random"):
        for seed in range(n_seeds):
            folder = root / f"{variant}{seed}"
            cfg = TINY_MODEL.replace(variant=variant, seed=seed, **changes)
            train_model(cfg, folder, tokenizer=tok, data=(train, val), progress=False)
            out[folder.name] = folder
    return out
