"""Do two dictionary seeds agree more on a planted-language model than on the Shakespeare demo model?

Trains the demo's baseline model (saekit.pipeline.demo.DEMO_MODEL) on the built-in corpus and on
`planted:NAME`, then the demo's SAE (top-k on the last MLP output, DEMO_LATENTS latents,
k DEMO_K, batch DEMO_BATCH, lr DEMO_LR, DEMO_TOKENS tokens) with several seeds on each, and prints
`seed_consistency` (mean pairwise Hungarian shared fraction at cos >= 0.7, against chance).

    nice python benchmarks/planted_agreement.py --spec small --seeds 0 1 2
    nice python benchmarks/planted_agreement.py --small --seeds 0 1 2   # the planted test's 1-layer model
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from saekit.activations import read_activations
from saekit.config import ModelConfig, TrainConfig
from saekit.data.planted import planted_language
from saekit.evaluation.matching import seed_consistency
from saekit.models.store import load_model
from saekit.models.train import train_variants
from saekit.pipeline.activations import rows
from saekit.pipeline.demo import DEMO_BATCH, DEMO_K, DEMO_LATENTS, DEMO_LR, DEMO_MODEL, DEMO_TOKENS
from saekit.pipeline.variants import default_dict_cfgs, shared_tokens
from saekit.training import train

# the planted test's model (tests/test_planted_models.py), for both datasets
SMALL_MODEL = ModelConfig(n_layers=1, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, steps=600, lr=1e-2, warmup_steps=30,
                          batch_size=32, weight_decay=1.0, device="cpu")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="small")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--weight-decay", type=float, default=None, help="for the planted-language model (default: the demo's)")
    p.add_argument("--lr", type=float, default=None, help="for the planted-language model (default: the demo's)")
    p.add_argument("--hook", default=None, help="default: the demo's (last MLP output)")
    p.add_argument("--datasets", nargs="+", default=["corpus", "planted"], choices=["corpus", "planted"])
    p.add_argument("--small", action="store_true", help="both datasets on the planted test's model (SMALL_MODEL)")
    p.add_argument("--models", default=None, help="keep the models in this folder and reuse them on a rerun")
    a = p.parse_args()
    base = SMALL_MODEL if a.small else DEMO_MODEL
    base = base if a.steps is None else base.replace(steps=a.steps)
    cfg = default_dict_cfgs(base.d_model, base.n_layers, expansion=1, k=DEMO_K)["sae"].replace(n_latents=DEMO_LATENTS)
    if a.hook:
        cfg = cfg.replace(hook_name=a.hook)
    tcfg = TrainConfig(batch_size=DEMO_BATCH, total_tokens=DEMO_TOKENS, lr=DEMO_LR, lr_warmup_steps=10, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = a.models or tmp
        for dataset in [None if d == "corpus" else f"planted:{a.spec}" for d in a.datasets]:
            t0 = time.process_time()
            mcfg = base if dataset is None else base.replace(vocab_size=planted_language(dataset).vocab_size)
            if dataset is not None and a.weight_decay is not None:
                mcfg = mcfg.replace(weight_decay=a.weight_decay)
            if dataset is not None and a.lr is not None:
                mcfg = mcfg.replace(lr=a.lr)
            folder = Path(tmp) / (dataset or "corpus").replace(":", "-")
            if (folder / "baseline").exists():
                h = load_model(folder / "baseline")
            else:
                h = train_variants(["baseline"], folder, mcfg, dataset=dataset)["baseline"]
            tokens = shared_tokens(h, DEMO_TOKENS, 256, 64)
            x = rows(read_activations(h, tokens.train, [cfg.hook_name], progress=False)[cfg.hook_name])
            saes = [train(cfg, x, tcfg.replace(seed=s), progress=False) for s in a.seeds]
            c = seed_consistency([s.W_dec.detach() for s in saes])
            print(f"{dataset or 'built-in corpus'} (lr {mcfg.lr}, weight decay {mcfg.weight_decay}): val loss {h.info['val_loss']:.3f}; {cfg.hook_name}, "
                  f"{cfg.n_latents} latents k {cfg.k}: {c['message']} ({time.process_time() - t0:.0f} s CPU)", flush=True)


if __name__ == "__main__":
    main()
