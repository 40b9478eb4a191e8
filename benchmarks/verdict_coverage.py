"""Coverage of the verdict intervals (saekit.pipeline.stats.bootstrap_delta) on synthetic groups.

Two groups with a known difference (1.0) of M model seeds × 3 dictionary seeds: a model effect
(sd 1), dictionary-seed noise (sd 0.1, 0.5 or 3) and, in the last column, 64 per-latent values per
dictionary (sd 2). Prints, per method and M, the fraction of 300 repetitions whose 95 % interval
covers 1.0. The figures in docs/comparing.md ("Verdicts: statistics") come from this script:

    PYTHONPATH=. python benchmarks/verdict_coverage.py      # about a minute on one core
"""

import numpy as np

from saekit.pipeline.stats import bootstrap_delta

SETTINGS = [(0, 0.1), (0, 0.5), (0, 3.0), (64, 0.5)]  # (per-latent values, dictionary-seed sd)


def group(rng, mu, n_models, n_latents, sd_seed, n_seeds=3, sd_model=1.0, sd_latent=2.0):
    out = {}
    for m in range(n_models):
        model_mean = mu + sd_model * rng.standard_normal()
        out[m] = {}
        for s in range(n_seeds):
            v = model_mean + sd_seed * rng.standard_normal()
            out[m][s] = v + sd_latent * rng.standard_normal(n_latents) if n_latents else v
    return out


def coverage(method: str, n_models: int, n_latents: int, sd_seed: float, reps: int = 300) -> float:
    rng = np.random.default_rng(1)
    hits = 0
    for r in range(reps):
        a = group(rng, 1.0, n_models, n_latents, sd_seed)
        b = group(rng, 0.0, n_models, n_latents, sd_seed)
        lo, hi = bootstrap_delta(a, b, n_boot=400, seed=r, method=method)["ci"]
        hits += lo <= 1.0 <= hi
    return hits / reps


if __name__ == "__main__":
    print("method      M  " + "  ".join(f"L={n} sd_seed={s}" for n, s in SETTINGS))
    for method in ("t", "percentile"):
        for m in (2, 3, 5, 10):
            print(f"{method:10s} {m:2d}  " + "  ".join(f"{coverage(method, m, n, s):15.3f}" for n, s in SETTINGS))
