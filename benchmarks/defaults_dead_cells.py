"""Dead latents at the defaults on issue 21's two peer rows (session 7): one ``Trainer`` sweep
(the same batches for all) of top-k dictionaries, each cell a multiple of the default rate and
DictionaryConfig overrides (``aux_coef``, ``k_aux``), with TrainConfig overrides shared by the
sweep (``dead_tokens``...) and the row's shape (``n_latents``, ``k``, ``d``, ``features``). Rows as in benchmarks/defaults_lr_cells.py (512 latents, k 8, batch
4096, 1M tokens); held-out FVU, L0, the fraction of latents never firing on 20k held-out rows,
MMCS (synthetic). One JSON line per cell.

Run:  python benchmarks/defaults_dead_cells.py lm '{"dead_tokens": 20480}' '{"mult": 1}' '{"mult": 1, "aux_coef": 0.5}'
      python benchmarks/defaults_dead_cells.py synthetic '{}' '{"mult": 1}'
(lm reads benchmarks/out/lm/train and benchmarks/out/lm/val, see RESULTS.md "Session 6".)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from defaults_vs_peers import cached_rows, synthetic_rows  # noqa: E402
from synthetic import feature_recovery  # noqa: E402

from saekit import DictionaryConfig, TrainConfig  # noqa: E402
from saekit.training import Trainer  # noqa: E402

SHAPE_KEYS = ("n_latents", "k", "d", "features")  # the row's shape, in the sweep's JSON (issue 21's own: 4096, 32, 128, 1024)


def split_shape(tk: dict) -> tuple[dict, dict]:
    """(the row's shape, with the stand-in row's 512 latents, k 8, 64-d, 512 features by default; TrainConfig overrides)."""
    shape = {"n_latents": 512, "k": 8, "d": 64, "features": 512, **{k: tk[k] for k in SHAPE_KEYS if k in tk}}
    return shape, {k: v for k, v in tk.items() if k not in SHAPE_KEYS}


def row_set(data: str, d: int = 64, features: int = 512):
    """(training rows, held-out rows, planted features or None) of issue 21's ``lm`` or ``synthetic`` row."""
    if data == "lm":
        return cached_rows(str(ROOT / "benchmarks/out/lm/train"), str(ROOT / "benchmarks/out/lm/val"), 20_000)
    return synthetic_rows(1_000_000, 20_000, d=d, n_features=features)


@torch.no_grad()
def held_out_scores(sae, Xv: torch.Tensor, feats: torch.Tensor | None) -> dict:
    """FVU, L0 and the dead fraction on the held-out rows; MMCS and matched > 0.9 where features are known."""
    z, xh = sae.encode(Xv), sae(Xv)
    row = {"fvu": round(float((xh - Xv).pow(2).sum() / (Xv - Xv.mean(0)).pow(2).sum()), 5),
           "l0": round(float((z != 0).sum(-1).float().mean()), 2),
           "dead_val": round(float(((z != 0).sum(0) == 0).float().mean()), 4)}  # fmt: skip
    if feats is not None:
        row["mmcs"], row["matched"] = (round(v, 4) for v in feature_recovery(feats, sae.W_dec.detach()))
    return row


def sweep(argv: list[str], not_config: tuple[str, ...]):
    """The command line's sweep: (row name, shape, TrainConfig overrides, cells, TrainConfig, Trainer,
    held-out rows, planted features); a cell's keys outside ``not_config`` are DictionaryConfig overrides."""
    data, (shape, tk), cells = argv[0], split_shape(json.loads(argv[1])), [json.loads(a) for a in argv[2:]]
    X, Xv, feats = row_set(data, shape["d"], shape["features"])
    cfgs = [DictionaryConfig(**{"kind": "topk", "d_in": X.shape[1], "n_latents": shape["n_latents"], "k": shape["k"],
                                **{k: v for k, v in c.items() if k not in not_config}}) for c in cells]  # fmt: skip
    tcfg = TrainConfig(**{"batch_size": 4096, "total_tokens": 1_000_000, "device": "cpu", "log_every": 0, **tk})
    return data, shape, tk, cells, tcfg, Trainer(cfgs, X, tcfg, progress=False), Xv, feats


def main() -> None:
    torch.set_num_threads(1)
    data, shape, tk, cells, _, tr, Xv, feats = sweep(sys.argv[1:], ("mult",))
    for run, c in zip(tr.runs, cells):
        run.base_lr *= c.get("mult", 1.0)
    t0 = time.perf_counter()
    saes = tr.fit()
    secs = time.perf_counter() - t0
    for c, run, sae in zip(cells, tr.runs, saes):
        row = {"data": data, **shape, "tcfg": tk, "cell": c, "lr": run.base_lr, "spread": tr.spread, "dead_window": run.tracker.window,
               **held_out_scores(sae, Xv, feats), "secs": round(secs)}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
