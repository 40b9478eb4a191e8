"""The whole pipeline on the built-in corpus, small enough for a laptop CPU (what ``saekit demo`` runs).

Trains tiny model variants (baseline, two regularisers, the random control), two model seeds
each, then a top-k SAE on each (three dictionary seeds), evaluates, compares across variants,
gives a verdict per variant and axis and writes OUT/report.html, which links the feature browsers
of the baseline's and act_l1's dictionaries (OUT/browser/).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from saekit.config import ModelConfig, TrainConfig

DEMO_VARIANTS = ["baseline", "act_l1", "pruned", "random"]
DEMO_MODEL_SEEDS = (0, 1)  # a verdict needs an interval over model seeds
# Small enough that the whole demo fits in ~15 minutes on a 2-core CPU.
DEMO_MODEL = ModelConfig(
    n_layers=2, d_model=128, n_heads=4, d_mlp=512, n_ctx=64, batch_size=32, steps=300, warmup_steps=30, device="cpu"
)


# `saekit demo --planted`: the planted language's model settings (docs/planted.md): one layer, weight decay 1.0
# (it takes the random initialisation out of the embeddings, leaving one clean direction per token class)
PLANTED_SPEC = "planted:small"
PLANTED_MODEL = ModelConfig(
    n_layers=1, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, batch_size=32, steps=600, lr=1e-2, warmup_steps=30,
    weight_decay=1.0, device="cpu",
)

DEMO_EXPANSION, DEMO_K = 1, 8  # 128 latents on the 128-d MLP output (64 on the planted models')
DEMO_BATCH, DEMO_LR, DEMO_TOKENS = 256, 4e-3, 100_000
DEMO_BROWSE = ("baseline", "act_l1")  # variants whose (first model seed's) dictionaries get a feature browser


def _demo_model(planted: str | None) -> ModelConfig:
    """The demo's model settings: the built-in corpus's, or the planted language's (its own vocabulary)."""
    if not planted:
        return DEMO_MODEL
    from saekit.data.planted import planted_language

    return PLANTED_MODEL.replace(vocab_size=planted_language(planted).vocab_size)


def run_demo(
    out: str | Path = "runs/demo",
    steps: int | None = None,
    train_tokens: int | None = None,
    overwrite: bool = False,
    planted: str | None = None,
) -> dict[str, Any]:
    """Train the demo's model variants into OUT/models (reused unless ``overwrite``), then compare
    an SAE across them into OUT (results.json, report.html). Returns the comparison's results.

    ``planted`` (e.g. ``"planted:small"``): the models learn that planted language instead of the
    built-in corpus, and the comparison scores every dictionary against its labels (the
    ``ground_truth`` verdict axis)."""
    from saekit.models import train_variants
    from saekit.pipeline.run import run_comparison
    from saekit.pipeline.variants import default_dict_cfgs

    out = Path(out)
    start = time.perf_counter()
    base = _demo_model(planted) if steps is None else _demo_model(planted).replace(steps=steps)
    paths = []
    for seed in DEMO_MODEL_SEEDS:
        root = out / "models" / f"seed{seed}"
        handles = train_variants(DEMO_VARIANTS, root, base=base.replace(seed=seed), overwrite=overwrite, dataset=planted)
        for variant, handle in handles.items():
            print(f"{variant:>12} seed {seed}: validation loss {handle.info['val_loss']:.3f}  → {handle.path}")
            paths.append(handle.path)
    model_s = time.perf_counter() - start
    extra = {} if train_tokens is None else {"train_tokens": train_tokens}
    # Narrow, small-batch dictionaries: at these settings two dictionary seeds of one demo model share
    # 27 % of latents at cos > 0.7 (chance 0 %), where 512 latents / batch 1024 shared 1 %
    # (docs/comparing.md, "Converged before compared"). The transcoder stays out of the time budget.
    sae_only = {"sae": default_dict_cfgs(base.d_model, base.n_layers, expansion=DEMO_EXPANSION, k=DEMO_K)["sae"]}
    tcfg = TrainConfig(
        batch_size=DEMO_BATCH, total_tokens=train_tokens or DEMO_TOKENS, lr=DEMO_LR, lr_warmup_steps=10, log_every=50
    )
    # feature browsers of the baseline and one regulariser, each latent linked to its match in the other
    results = run_comparison(
        paths, sae_only, out_dir=out, device="cpu", cache_dir=out / "cache", tcfg=tcfg, browse=DEMO_BROWSE, **extra
    )
    total = time.perf_counter() - start
    print(f"demo finished in {total:.0f} s (models {model_s:.0f} s); report: {out / 'report.html'}")
    return results
