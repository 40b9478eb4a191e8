"""Sparsity-prior diagnostic: Laplace vs Cauchy samples are told apart; a dictionary's share; the plot."""

import numpy as np
import torch

from saekit.evaluation.priors import classify, fit_priors, plot_priors


def test_laplace_and_cauchy_samples_are_classified_correctly():
    rng = np.random.default_rng(0)
    right = {"laplace": 0, "cauchy": 0}
    trials = 60
    for _ in range(trials):
        right["laplace"] += classify(rng.laplace(0, rng.uniform(0.2, 3.0), 300))["family"] == "laplace"
        right["cauchy"] += classify(rng.standard_cauchy(300) * rng.uniform(0.2, 3.0))["family"] == "cauchy"
    assert right["laplace"] / trials >= 0.95 and right["cauchy"] / trials >= 0.95, right


def test_fit_priors_shares_and_implied_penalty(tmp_path):
    rng = np.random.default_rng(1)
    n = 4000
    codes = np.zeros((n, 6))
    on = rng.random((n, 6)) < 0.3
    codes[:, :4] = np.abs(rng.laplace(0, 1.0, (n, 4)))  # 4 Laplace latents
    codes[:, 4:] = np.abs(rng.standard_cauchy((n, 2)))  # 2 Cauchy latents
    codes *= on
    codes[:, 5] = 0
    codes[:10, 5] = 1.0  # too few activations: skipped
    res = fit_priors(torch.tensor(codes, dtype=torch.float32))
    assert res["per_latent"] == {0: "laplace", 1: "laplace", 2: "laplace", 3: "laplace", 4: "cauchy"}
    assert res["skipped"] == 1 and res["share"]["laplace"] == 0.8 and res["share"]["cauchy"] == 0.2
    assert res["dominant"] == "laplace" and res["implied_penalty"]["saekit_penalty"] == "l1"
    png = plot_priors(res, tmp_path / "priors.png", example=codes[:, 4])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
