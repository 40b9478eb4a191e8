"""Synthetic activations with known sparse features (shared by the dictionary tests and benchmarks).

x = Σ_i a_i f_i over unit-norm feature directions f_i (random in d dims), feature i firing with
a Zipf-like probability ∝ 1/rank^0.5 scaled so ~``mean_active`` fire per token, magnitudes
uniform in [0.5, 2].
"""

from __future__ import annotations

import torch


def sparse_feature_data(
    n: int = 30_000, d: int = 64, n_features: int = 512, mean_active: float = 5.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(X [n, d], features [n_features, d]) with the features as unit-norm rows."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_features, d, generator=gen)
    feats /= feats.norm(dim=-1, keepdim=True)
    return _draw_rows(n, feats, mean_active, gen), feats


def planted_rows(n_rows: int, n_val: int, d: int = 64, n_features: int = 512, mean_active: float = 5.0):
    """(training rows, held-out rows, features) of sparse_feature_data's world (the same features),
    drawn in chunks of 50k rows so that 1M+ rows fit in memory: issue 21's synthetic rows."""
    _, feats = sparse_feature_data(n=1, d=d, n_features=n_features, mean_active=mean_active, seed=0)
    gen = torch.Generator().manual_seed(1)
    total = n_rows + n_val
    X = torch.cat([_draw_rows(min(50_000, total - s), feats, mean_active, gen) for s in range(0, total, 50_000)])
    return X[:n_rows], X[n_rows:], feats


def _draw_rows(n: int, feats: torch.Tensor, mean_active: float, gen: torch.Generator) -> torch.Tensor:
    """n rows Σ a_i f_i: feature i fires with probability ∝ 1/rank^0.5 (about ``mean_active`` a row)."""
    p = 1.0 / torch.arange(1, feats.shape[0] + 1).float() ** 0.5
    p = (p / p.sum() * mean_active).clamp(max=1.0)
    active = torch.rand(n, feats.shape[0], generator=gen) < p
    mags = torch.rand(n, feats.shape[0], generator=gen) * 1.5 + 0.5
    return (active * mags) @ feats


def feature_recovery(features: torch.Tensor, W_dec: torch.Tensor) -> tuple[float, float]:
    """(mean max cosine similarity, fraction of features with a latent at cosine > 0.9)."""
    W = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (features @ W.T).max(1).values
    return float(best.mean()), float((best > 0.9).float().mean())


def planted_model_pair(
    n: int = 20_000,
    d: int = 48,
    n_shared: int = 24,
    n_only: int = 8,
    n_weak: int = 0,
    weak: float = 0.25,
    mean_active: float = 3.0,
    seed: int = 0,
) -> dict:
    """Two synthetic "models" reading the same tokens (for crosscoders).

    Feature i fires on the same rows with the same magnitude in both models, but each model
    writes it along its own random unit direction (independent models do not share a basis).
    Kinds: ``shared`` (both models), ``a`` / ``b`` (one model only), ``weak`` (both, but B's copy
    is ``weak`` times as strong: a feature a sparsity penalty is tempted to call A-only).
    Returns {"a": Xa, "b": Xb, "kinds": [...], "dirs_a": [F, d], "dirs_b": [F, d]}.
    """
    kinds = ["shared"] * n_shared + ["a"] * n_only + ["b"] * n_only + ["weak"] * n_weak
    f = len(kinds)
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(2, f, d, generator=gen)
    dirs /= dirs.norm(dim=-1, keepdim=True)
    active = torch.rand(n, f, generator=gen) < mean_active / f
    acts = active * (torch.rand(n, f, generator=gen) * 1.5 + 0.5)
    in_a = torch.tensor([k != "b" for k in kinds], dtype=torch.float32)
    in_b = torch.tensor([{"a": 0.0, "weak": weak}.get(k, 1.0) for k in kinds])
    return {
        "a": (acts * in_a) @ dirs[0],
        "b": (acts * in_b) @ dirs[1],
        "kinds": kinds,
        "dirs_a": dirs[0],
        "dirs_b": dirs[1],
    }
