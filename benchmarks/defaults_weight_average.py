"""Does averaging the weights over the end of a run lift MMCS off the FVU-MMCS front? (issue 21)

One saekit run at its defaults on the peers' batches (the same rows, order and seed as
``defaults_vs_peers.py --seed N``: its "saekit defaults" row is reproduced exactly), keeping
beside the trained weights

- exponential moving averages of every parameter (``--emas``, decay per step), and
- uniform averages over the last fraction of the steps (``--tails``),

all evaluated at the end on the held-out rows with the same metrics. Each average is evaluated as
averaged and with its decoder rows put back to unit norm (the encoder unchanged). So one run gives
the baseline and every candidate at the same initialisation and batch order: paired by
construction. The output is defaults_vs_peers.py's JSON (runs named "saekit ema 0.995",
"saekit tail 0.2 unit", ...), for ``seed_pairs.py --ours``.

Run:  PYTHONPATH=.:tests python benchmarks/defaults_weight_average.py --seed 0 --out ema_seed0.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_vs_peers as tvp  # noqa: E402
from defaults_vs_peers import cached_rows, synthetic_rows  # noqa: E402

from saekit.config import DictionaryConfig, TrainConfig  # noqa: E402
from saekit.kinds import KINDS  # noqa: E402
from saekit.training import TensorSource, Trainer  # noqa: E402


class Averages:
    """Running averages of a dictionary's parameters: EMAs and uniform tails."""

    def __init__(self, sae: torch.nn.Module, emas: list[float], tails: list[float], steps: int):
        self.params = dict(sae.named_parameters())
        self.ema = {d: {k: p.detach().clone() for k, p in self.params.items()} for d in emas}
        self.tail_start = {f: int(steps * (1 - f)) for f in tails}
        self.tail = {f: {k: torch.zeros_like(p) for k, p in self.params.items()} for f in tails}
        self.count = {f: 0 for f in tails}

    @torch.no_grad()
    def update(self, step: int) -> None:
        for d, avg in self.ema.items():
            for k, p in self.params.items():
                avg[k].lerp_(p, 1 - d)
        for f, avg in self.tail.items():
            if step >= self.tail_start[f]:
                self.count[f] += 1
                for k, p in self.params.items():
                    avg[k].add_(p)

    def candidates(self) -> dict[str, dict[str, torch.Tensor]]:
        out = {f"ema {d:g}": avg for d, avg in self.ema.items()}
        out.update({f"tail {f:g}": {k: v / max(1, self.count[f]) for k, v in avg.items()} for f, avg in self.tail.items()})
        return out


@torch.no_grad()
def evaluate(sae, Xv: torch.Tensor, feats: torch.Tensor) -> dict:
    z = sae.encode(Xv)
    res = {"xhat": sae(Xv), "fires": (z != 0).sum(0).float(), "l0": (z != 0).sum(1).float(), "W_dec": sae.W_dec.detach()}
    return tvp.metrics(Xv, res, feats)


def with_weights(sae, weights: dict[str, torch.Tensor], unit: bool):
    twin = copy.deepcopy(sae)
    with torch.no_grad():
        for k, p in twin.named_parameters():
            p.copy_(weights[k])
        if unit:
            twin.set_decoder_norm_to_unit_norm()
    return twin


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n-latents", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--kind", default="topk", help="any kind; k is passed to the kinds that take one")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--emas", type=float, nargs="*", default=[0.99, 0.995, 0.998])
    ap.add_argument("--tails", type=float, nargs="*", default=[0.05, 0.1, 0.2])
    ap.add_argument("--data", default="synthetic", help="synthetic | lm (needs --cache and --val-cache)")
    ap.add_argument("--cache", default=None, help="`saekit cache` folder of training activations")
    ap.add_argument("--val-cache", default=None, help="`saekit cache` folder of held-out activations")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.data == "synthetic":
        X, Xv, feats = synthetic_rows(min(args.tokens, args.rows), 20_000, d=args.d, n_features=args.features)
    else:
        X, Xv, feats = cached_rows(args.cache, args.val_cache, 20_000)
    torch.manual_seed(args.seed)  # as the peers' runner: before the permutation and the Trainer
    torch.set_num_threads(1)
    steps = args.tokens // args.batch
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(args.seed))
    k = {"k": args.k} if KINDS[args.kind].uses_k else {}
    cfg = DictionaryConfig(kind=args.kind, d_in=X.shape[1], n_latents=args.n_latents, **k)
    tcfg = TrainConfig(batch_size=args.batch, total_tokens=args.batch * steps, seed=args.seed, device="cpu", log_every=0,
                       tail_average=0.0)  # the trainer's own averaging off: this script keeps its averages
    tr = Trainer(cfg, TensorSource(X[perm], shuffle=False), tcfg, progress=False)
    sae = tr.runs[0].sae
    avg = Averages(sae, args.emas, args.tails, steps)
    t0 = time.perf_counter()
    for i in range(steps):
        tr.step(*tr.next_batch())
        avg.update(i)
        if (i + 1) % max(1, steps // 10) == 0:
            print(f"step {i + 1}/{steps} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    rows = [{"run": "saekit defaults", **evaluate(sae, Xv, feats)}]
    for name, weights in avg.candidates().items():
        for unit in (False, True):
            rows.append({"run": f"saekit {name}" + (" unit" if unit else ""),
                         **evaluate(with_weights(sae, weights, unit), Xv, feats)})
    for r in rows:
        print(json.dumps(r), flush=True)
    doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "settings": vars(args), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
