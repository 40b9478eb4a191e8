"""One JumpReLU (or other kind) training on a planted world, for the JumpReLU defaults table of
docs/dictionaries.md: L0, MMCS, fraction of features matched (cos > 0.9), FVU, dead fraction.

    PYTHONPATH=. python benchmarks/jumprelu_settings.py flat                      # every default
    PYTHONPATH=. python benchmarks/jumprelu_settings.py flat jumprelu_init_threshold=0.001 \\
        jumprelu_bandwidth=0.001 jumprelu_threshold_lr_scale=1                    # the former defaults
    PYTHONPATH=. python benchmarks/jumprelu_settings.py flat jumprelu_sparsity_loss='"quadratic"' target_l0=3
    PYTHONPATH=. python benchmarks/jumprelu_settings.py flat kind='"topk"' k=3 # the reference

World ``flat``: 64-d, 256 unit features, ~3 active per token, 512 latents, batch 512, 150k tokens;
``small``: 32-d, 128 features, 256 latents, batch 256, 60k tokens (tests/synthetic.py). Other
``key=value`` (JSON values) are DictionaryConfig fields, except tokens=, lr=, normalize=, scale=
(multiply the data), seed= (training), dseed= (data). One CPU thread.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import feature_recovery, sparse_feature_data  # noqa: E402

from saekit import DictionaryConfig, TrainConfig, train  # noqa: E402

WORLDS = {  # n rows, d, features, latents, batch, tokens
    "flat": (30_000, 64, 256, 512, 512, 150_000),
    "small": (20_000, 32, 128, 256, 256, 60_000),
}
RUN_KEYS = ("tokens", "lr", "normalize", "scale", "seed", "dseed")


def parse(args: list[str]) -> tuple[dict, dict]:
    kw = {}
    for a in args:
        key, value = a.split("=", 1)
        try:
            kw[key] = json.loads(value)
        except json.JSONDecodeError:
            kw[key] = value
    run = {k: kw.pop(k) for k in RUN_KEYS if k in kw}
    return kw, run


def main() -> None:
    torch.set_num_threads(1)
    world = sys.argv[1]
    kw, run = parse(sys.argv[2:])
    n, d, n_features, n_latents, batch, tokens = WORLDS[world]
    X, features = sparse_feature_data(n=n, d=d, n_features=n_features, mean_active=3.0, seed=run.get("dseed", 0))
    X = X * run.get("scale", 1.0)
    n_latents = kw.pop("n_latents", n_latents)
    cfg = DictionaryConfig(kind=kw.pop("kind", "jumprelu"), d_in=d, n_latents=n_latents, **kw)
    tcfg = TrainConfig(
        batch_size=batch, total_tokens=run.get("tokens", tokens), seed=run.get("seed", 0),
        device="cpu", lr=run.get("lr"), normalize=run.get("normalize"),
    )
    t0 = time.time()
    sae = train(cfg, X, tcfg, progress=False)
    with torch.no_grad():
        x = X[:4000]
        fvu = float((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        z = sae.encode(x)
        l0 = float((z != 0).sum(-1).float().mean())
        dead = float(((z != 0).sum(0) == 0).float().mean())
    mmcs, matched = feature_recovery(features, sae.W_dec.detach())
    print(f"{world} {' '.join(sys.argv[2:])}: L0 {l0:.2f} MMCS {mmcs:.3f} matched {matched:.2f} "
          f"FVU {fvu:.3f} dead {dead:.2f} ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
