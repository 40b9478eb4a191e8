"""Choosing L0 by a scan of k on one stream: the chosen L0 is within 30 % of the data's true L0."""

import pytest
import torch

from saekit import TrainConfig
from saekit.errors import ConfigError
from saekit.evaluation.l0 import knee
from saekit.evaluation.probes import hierarchical_data
from saekit.pipeline.l0_scan import scan_l0


def test_chosen_l0_is_within_30_percent_of_the_true_l0():
    world = hierarchical_data(24_000, d=64, n_features=48, n_parents=0, mean_active=5.0, corr_strength=0.3, seed=0)
    train_x, held_out = world.x[:20_000], world.x[20_000:]
    true_l0 = float((world.codes[:20_000] != 0).sum(-1).float().mean())
    tcfg = TrainConfig(batch_size=256, total_tokens=50_000, lr=3e-3, lr_warmup_steps=20, seed=0, device="cpu")
    res = scan_l0(train_x, held_out, n_latents=64, ks=(1, 2, 3, 4, 5, 6, 8, 11, 16), tcfg=tcfg, progress=False)
    print(true_l0, res["chosen_l0"], {k: round(r["fvu"], 3) for k, r in res["rows"].items()})
    assert abs(res["chosen_l0"] - true_l0) <= 0.3 * true_l0, (res["chosen_l0"], true_l0)
    fvu = [r["fvu"] for r in res["rows"].values()]
    assert fvu[0] > 0.5 > 0.1 > fvu[-1]  # the scan spans too sparse to dense enough


def test_knee_of_a_known_curve_and_bad_scans():
    ks = [1, 2, 3, 4, 6, 8, 12]
    fvu = [max(0.0, 1 - k / 4) * 0.9 + 0.02 - 0.001 * k for k in ks]  # linear fall to k = 4, flat after
    assert knee(ks, fvu) == 4
    with pytest.raises(ConfigError, match="at least 3 values of k"):
        knee([1, 2], [0.5, 0.2])
    with pytest.raises(ConfigError, match="must be a top-k kind"):
        scan_l0(None, torch.zeros(4, 8), n_latents=8, kind="relu")
