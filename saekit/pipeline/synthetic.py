"""The check that the training pipeline finds known features at all, before its results on real
models are trusted."""

from __future__ import annotations

from saekit.config import DictionaryConfig, TrainConfig
from saekit.evaluation.probes import ground_truth_recovery, toy_sparse_data


def synthetic_check(
    tcfg: TrainConfig | None = None,
    seed: int = 0,
    d: int = 32,
    n_features: int = 64,
    n_samples: int = 16384,
    epochs: int = 16,
    p_active: float = 0.03,
    quiet: bool = True,
) -> dict:
    """Train a top-k SAE on toy data made of known sparse features; report how many it recovers.

    MMCS of true features to learned decoder rows (1.0 = all found) and the fraction recovered.
    """
    from saekit.training import train

    x, feats = toy_sparse_data(n_samples, d, n_features, p_active=p_active, seed=seed)
    cfg = DictionaryConfig(kind="topk", d_in=d, n_latents=2 * n_features, k=4)
    t = (tcfg or TrainConfig(device="cpu")).replace(
        total_tokens=epochs * n_samples, batch_size=512, lr=4e-3, seed=seed, lr_warmup_steps=10
    )
    sae = train(cfg, x, t, progress=not quiet)
    out = ground_truth_recovery(sae, feats)
    out.update({"d": d, "n_features": n_features, "p_active": p_active, "n_latents": cfg.n_latents, "k": cfg.k})
    return out
