"""The whole pipeline on the built-in corpus, small enough for a laptop CPU (what ``saekit demo`` runs).

Trains tiny model variants (baseline, two regularisers, the random control), two model seeds
each, then a top-k SAE on each (three dictionary seeds), evaluates, compares across variants,
gives a verdict per variant and axis and writes OUT/report.html, which links the feature browsers
of the baseline's and act_l1's dictionaries (OUT/browser/).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from saekit.config import ModelConfig, TrainConfig

DEMO_VARIANTS = ["baseline", "act_l1", "pruned", "random"]
DEMO_MODEL_SEEDS = (0, 1)  # a verdict needs an interval over model seeds
# Small enough that `make demo` fits in 15 minutes on a 2-core CPU (README). 200 steps (410k tokens) rather
# than 300: the SAE's two seeds still share 36 % of latents (39 % at 300; docs/comparing.md, "Converged before
# compared") and each model costs two thirds.
DEMO_MODEL = ModelConfig(
    n_layers=2, d_model=128, n_heads=4, d_mlp=512, n_ctx=64, batch_size=32, steps=200, warmup_steps=30, device="cpu"
)


# `saekit demo --planted`: the planted language's model settings (docs/planted.md): one layer, weight decay 1.0
# (it takes the random initialisation out of the embeddings, leaving one clean direction per token class)
PLANTED_SPEC = "planted:small"
PLANTED_MODEL = ModelConfig(
    n_layers=1, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, batch_size=32, steps=600, lr=1e-2, warmup_steps=30,
    weight_decay=1.0, device="cpu",
)

DEMO_LATENTS, DEMO_K = 64, 8  # on the 128-d MLP output (and the planted models' 64-d one)
DEMO_BATCH, DEMO_LR, DEMO_TOKENS = 256, 4e-3, 100_000
DEMO_BROWSE = ("baseline", "act_l1")  # variants whose (first model seed's) dictionaries get a feature browser


def _demo_model(planted: str | None) -> ModelConfig:
    """The demo's model settings: the built-in corpus's, or the planted language's (its own vocabulary)."""
    if not planted:
        return DEMO_MODEL
    from saekit.data.planted import planted_language

    return PLANTED_MODEL.replace(vocab_size=planted_language(planted).vocab_size)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def train_demo_models(root: Path, base: ModelConfig, overwrite: bool = False, planted: str | None = None) -> list[Path]:
    """Every DEMO_VARIANTS model of every DEMO_MODEL_SEEDS seed under ROOT/seed<s>/<variant>.

    With two or more CPUs the seeds train at once, one process each with its share of the CPU's threads:
    these tiny models keep one thread busy far better than two (benchmarks/RESULTS.md, "The demo's time").
    Each seed's models get the same bytes either way on one machine (same seed, data and thread count)."""
    jobs = [(root / f"seed{seed}", base.replace(seed=seed), overwrite, planted) for seed in DEMO_MODEL_SEEDS]
    workers = min(len(jobs), _cpus())
    if workers < 2:
        done = [_train_seed(*job, threads=0) for job in jobs]
    else:
        threads = max(1, _cpus() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_train_seed, *zip(*jobs), [threads] * len(jobs)))
    paths = []
    for seed, models in zip(DEMO_MODEL_SEEDS, done):
        for variant, path, val_loss in models:
            print(f"{variant:>12} seed {seed}: validation loss {val_loss:.3f}  → {path}")
            paths.append(Path(path))
    return paths


def _train_seed(
    root: Path, base: ModelConfig, overwrite: bool, planted: str | None, threads: int
) -> list[tuple[str, str, float]]:
    """One model seed's variants (run in a worker process when threads > 0): (variant, folder, val loss)."""
    import torch

    from saekit.allocator import keep_freed_memory
    from saekit.models import train_variants

    if threads:
        torch.set_num_threads(threads)
        keep_freed_memory()
    handles = train_variants(DEMO_VARIANTS, root, base=base, overwrite=overwrite, dataset=planted)
    return [(v, str(h.path), float(h.info["val_loss"])) for v, h in handles.items()]


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
    from saekit.allocator import keep_freed_memory
    from saekit.pipeline.run import run_comparison
    from saekit.pipeline.variants import default_dict_cfgs

    keep_freed_memory()
    out = Path(out)
    start = time.perf_counter()
    base = _demo_model(planted) if steps is None else _demo_model(planted).replace(steps=steps)
    paths = train_demo_models(out / "models", base, overwrite, planted)
    model_s = time.perf_counter() - start
    extra = {} if train_tokens is None else {"train_tokens": train_tokens}
    # Narrow, small-batch dictionaries: at these settings two dictionary seeds of one 200-step demo model
    # share 36 % of latents at cos > 0.7 (chance 0 %; 128 latents: 23 %), where 512 latents / batch 1024
    # shared 1 % (docs/comparing.md, "Converged before compared"). The transcoder stays out of the budget.
    sae = default_dict_cfgs(base.d_model, base.n_layers, expansion=1, k=DEMO_K)["sae"].replace(n_latents=DEMO_LATENTS)
    sae_only = {"sae": sae}
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
