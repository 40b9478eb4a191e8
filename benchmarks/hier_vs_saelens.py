"""saekit vs SAELens on the hierarchical ground-truth world: batchtopk, matryoshka, jumprelu (issue 18).

One world from ``saekit.evaluation.groundtruth.hierarchical_data`` (parents whose children fire
only with them, correlated Zipfian firing); every run trains on the same rows (i.i.d. draws) for
the same number of tokens and batch size (saekit in the order its shuffling gives, SAELens in
file order), each framework at its defaults:

* saekit: ``DictionaryConfig(kind, d_in, n_latents, k)`` and ``TrainConfig(batch_size,
  total_tokens)``, nothing else (its lr rule, warm-up, decay, normalisation, init; jumprelu at
  its default L0 coefficient, no k).
* SAELens 6.54: ``BatchTopKTrainingSAE``, ``MatryoshkaBatchTopKTrainingSAE`` (SAELens has no
  default widths: saekit's, n/8, n/4, n/2, n) and ``JumpReLUTrainingSAE`` at their config
  defaults, driven the way its trainer drives them: Adam (0.9, 0.999) at its default lr 3e-4,
  gradient norm clipped at 1.0, no warm-up or decay, dead window 1000 steps, its coefficient
  schedule (``get_coefficients``); saved with ``save_inference_model`` (batch top-k kinds become
  JumpReLU) and read back with ``saekit.load`` (the interop benchmark checks that reader).

Every dictionary is then scored by the same code on held-out rows: MCC, F1, uniqueness
(``groundtruth_scores``), explained variance 1 − FVU, dead fraction (never fires on the held-out
rows), L0, and training tokens/s (the training loop only, same process count and threads).

Run: PYTHONPATH=. .venv/bin/python benchmarks/hier_vs_saelens.py
     --python benchmarks/.venvs/saelens/bin/python [--rows 300000 --tokens 300000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import saekit
from saekit.evaluation.groundtruth import groundtruth_scores, hierarchical_data

KINDS = ["batchtopk", "matryoshka", "jumprelu"]

SAELENS = r"""
import json, sys, time, torch
from safetensors.torch import load_file
torch.set_num_threads(int(sys.argv[4]))
from sae_lens.saes.sae import TrainStepInput
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens import MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig
x = load_file(sys.argv[1])["x"]
job = json.loads(sys.argv[2]); out = sys.argv[3]
base = dict(d_in=x.shape[1], d_sae=job["n"], device="cpu", dtype="float32")
if job["kind"] == "batchtopk":
    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(k=job["k"], **base))
elif job["kind"] == "matryoshka":
    sae = MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(k=job["k"], matryoshka_widths=job["widths"], **base))
else:
    sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**base))
opt = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))  # SAELens runner defaults
B, steps, n = job["batch"], job["steps"], job["n"]
since = torch.zeros(n, dtype=torch.long)
t0 = time.perf_counter()
for i in range(steps):
    xb = x[i * B:(i + 1) * B]
    coefs = {name: getattr(c, "value", c) * (min(1.0, (i + 1) / c.warm_up_steps) if getattr(c, "warm_up_steps", 0) else 1.0)
             for name, c in sae.get_coefficients().items()}
    o = sae.training_forward_pass(TrainStepInput(sae_in=xb, coefficients=coefs, dead_neuron_mask=since > 1000,
                                                 n_training_steps=i, is_logging_step=False))
    opt.zero_grad(); o.loss.backward()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        since += 1; since[(o.feature_acts > 0).any(0)] = 0
secs = time.perf_counter() - t0
sae.save_inference_model(out)
print(json.dumps({"train_s": secs}))
"""


def run_saekit(kind: str, x: torch.Tensor, args) -> tuple[object, float]:
    cfg = saekit.DictionaryConfig(kind=kind, d_in=x.shape[1], n_latents=args.n_latents,
                                  **({} if kind == "jumprelu" else {"k": args.k}))
    tcfg = saekit.TrainConfig(batch_size=args.batch, total_tokens=args.tokens)
    t0 = time.perf_counter()
    sae = saekit.train(cfg, x, tcfg, progress=False)
    return sae, time.perf_counter() - t0


def run_saelens(kind: str, x: torch.Tensor, args, work: Path) -> tuple[object, float]:
    data = work / "x.safetensors"
    if not data.exists():
        save_file({"x": x[: args.tokens].contiguous()}, str(data))
    widths = list(saekit.DictionaryConfig(kind="matryoshka", d_in=x.shape[1], n_latents=args.n_latents, k=args.k).matryoshka_widths)
    job = {"kind": kind, "n": args.n_latents, "k": args.k, "batch": args.batch, "steps": args.tokens // args.batch, "widths": widths}
    out = work / f"saelens_{kind}"
    r = subprocess.run([args.python, "-c", SAELENS, str(data), json.dumps(job), str(out), str(torch.get_num_threads())],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"SAELens {kind} failed:\n{r.stderr[-3000:]}")
    secs = json.loads(r.stdout.strip().splitlines()[-1])["train_s"]
    return saekit.load(str(out)), secs


@torch.no_grad()
def scores(sae, world, x_eval: torch.Tensor) -> dict:
    s = groundtruth_scores(sae, world, n_eval=x_eval.shape[0])
    xhat = torch.cat([sae(x_eval[i : i + 8192]) for i in range(0, x_eval.shape[0], 8192)])
    fvu = float((xhat - x_eval).pow(2).sum() / (x_eval - x_eval.mean(0)).pow(2).sum())
    z = torch.cat([sae.encode(x_eval[i : i + 8192]) for i in range(0, x_eval.shape[0], 8192)])
    return {k: s[k] for k in ("mcc", "f1", "uniqueness", "absorption", "l0")} | {
        "explained_variance": 1 - fvu,
        "dead_fraction": float((z != 0).sum(0).eq(0).float().mean()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="python of a venv with sae-lens")
    ap.add_argument("--rows", type=int, default=300_000, help="training rows (one epoch = --tokens)")
    ap.add_argument("--eval-rows", type=int, default=20_000)
    ap.add_argument("--tokens", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--n-latents", type=int, default=256)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--frameworks", default="saekit,saelens", help="saekit,saelens or one of them")
    ap.add_argument("--out", default="benchmarks/out/hier_vs_saelens.json")
    args = ap.parse_args()
    world = hierarchical_data(args.rows + args.eval_rows, args.d, args.features, n_parents=16, children_per_parent=4,
                              mean_active=4.0, seed=0)
    args.k = max(1, round(world.true_l0))
    x = world.x[args.eval_rows :]  # training rows; the first eval_rows are held out (groundtruth_scores reads them)
    x_eval = world.x[: args.eval_rows]
    print(f"world: d {args.d}, {args.features} features, true L0 {world.true_l0:.2f} -> k {args.k}; "
          f"{args.tokens} tokens, batch {args.batch}, {args.n_latents} latents, threads {torch.get_num_threads()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            for fw in args.frameworks.split(","):
                load0 = os.getloadavg()[0]
                sae, secs = run_saekit(kind, x, args) if fw == "saekit" else run_saelens(kind, x, args, Path(tmp))
                row = {"framework": fw, "kind": kind, "tokens_per_s": args.tokens / secs, "train_s": secs,
                       "load_average": load0} | scores(sae, world, x_eval)
                rows.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "true_l0": world.true_l0, "rows": rows}, indent=1))
    print("| framework | kind | MCC | F1 | uniqueness | absorption | EV | dead | L0 | tokens/s |")
    for r in rows:
        print(f"| {r['framework']} | {r['kind']} | {r['mcc']:.3f} | {r['f1']:.3f} | {r['uniqueness']:.3f} | "
              f"{r['absorption']:.3f} | {r['explained_variance']:.3f} | {r['dead_fraction']:.3f} | {r['l0']:.1f} | "
              f"{r['tokens_per_s']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
