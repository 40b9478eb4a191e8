"""saekit at its defaults against the peers at theirs (issue 21): top-k SAEs on the same rows and
token budget, each framework in its own process (peers in their own venvs, see train_vs_peers.py).

- saekit: ``DictionaryConfig(kind="topk", ...)`` and ``TrainConfig(batch_size, total_tokens)``, nothing else,
- SAELens (TopKTrainingSAE, Adam, clip 1.0, no warm-up: its defaults) at each learning rate of a
  small sweep (``--saelens-lrs``); the best one by held-out FVU is its row,
- sparsify (SparseCoder, FVU + AuxK/32) with its default optimiser, Signum (schedule-free SignSGD,
  momentum 0.95, constant lr 5e-3·√(16384/n), as its trainer builds it), and with Adam at its
  default lr 2e-4·√(16384/n) (warm-up: a tenth of the run, not sparsify's 1000 steps, which
  would never reach the peak in a short run).

Metrics (same code for all): held-out FVU, L0, dead fraction, MMCS on synthetic data, tokens/s of
the training loop (batches in memory). Rows: the tests/synthetic.py world (64-d, 512 features,
~5 active) and the residual stream of the tiny transformer-lens model of tests/tiny_models.py.

Run:  python benchmarks/defaults_vs_peers.py [--tokens 1000000] [--venvs benchmarks/.venvs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_vs_peers as tvp  # noqa: E402

SAEKIT_DEFAULTS = tvp.COMMON + r"""
from saekit.config import DictionaryConfig, TrainConfig
from saekit.training import Trainer, TensorSource
cfg = DictionaryConfig(kind="topk", d_in=X.shape[1], n_latents=n, k=k)
src = TensorSource(X[perm], shuffle=False)  # the peers' batches, epoch after epoch
tcfg = TrainConfig(batch_size=B, total_tokens=B * steps, seed=job["seed"], device="cpu", log_every=0)  # nothing else set
if job.get("old"):  # the defaults before issue 21: Gao's rate, 100 warm-up steps
    tcfg = tcfg.replace(lr=2e-4 / (n / 16384) ** 0.5, lr_warmup_steps=100, normalize=False)
if job.get("prev"):  # session 4's rule: the knee at 8192 steps (twice today's rate in short runs)
    tcfg = tcfg.replace(lr=min(1e-2, 2e-4 / (n / 16384) ** 0.5 * max(1.0, (8192 / steps) ** 0.5)))
if job.get("saekit_lr"):  # a fixed learning rate instead of the default rule (--saekit-lrs)
    tcfg = tcfg.replace(lr=job["saekit_lr"])
if job.get("saekit_cfg"):  # a candidate default (--saekit-configs): DictionaryConfig and "train" overrides
    extra = dict(job["saekit_cfg"])
    tcfg = tcfg.replace(**extra.pop("train", {}))
    cfg = cfg.replace(**extra)
tr = Trainer(cfg, src, tcfg, progress=False)
t0 = time.perf_counter()
for i in range(steps):
    x, y = tr.next_batch()
    tr.step(x, y)
    tick(i, t0)
t = time.perf_counter() - t0
sae = tr.finish()[0]  # the dictionary fit() returns: the tail's mean where the trainer averages
with torch.no_grad():
    z = sae.encode(Xv); xhat = sae(Xv)
finish(z, xhat, sae.W_dec.detach(), t)
"""

# SAELens and sparsify through benchmarks/peer_steps.py (the one copy of their step bodies)
PEER_RUNNER = tvp.COMMON + r"""
import os
sys.path.insert(0, os.path.join(os.environ["SAEKIT_ROOT"], "benchmarks"))
import peer_steps
if job["framework"] == "saelens":
    m = peer_steps.SAELensTopK(X.shape[1], n, k, lr, dead_steps=max(1, job["dead_tokens"] // B))
else:
    m = peer_steps.SparsifyTopK(X.shape[1], n, k, lr, optimizer=job["optimizer"], dead_tokens=job["dead_tokens"])
t0 = time.perf_counter()
for i in range(steps):
    m.set_lr(lr_at(i))
    m.step(batch(i))
    tick(i, t0)
t = time.perf_counter() - t0
z, xhat, W = m.evaluate(Xv)
finish(z, xhat, W, t)
"""

# progress on stderr every tenth of the run (long CPU runs are polled)
TICK = r"""
def tick(i, t0):
    if (i + 1) % max(1, steps // 10) == 0:
        print(f"step {i + 1}/{steps} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
"""
SAEKIT_DEFAULTS = SAEKIT_DEFAULTS.replace("from saekit.config", TICK + "from saekit.config", 1)
PEER_RUNNER = PEER_RUNNER.replace("import os\n", "import os\n" + TICK, 1)


def synthetic_rows(n_rows: int, n_val: int, d: int = 64, n_features: int = 512, mean_active: float = 5.0):
    """tests/synthetic.py's world, drawn in chunks (so 1M+ rows fit in memory): the same features."""
    from synthetic import planted_rows

    return planted_rows(n_rows, n_val, d, n_features, mean_active)


def cached_rows(cache: str, val_cache: str, n_val: int):
    """A tiny LM's residual stream from two ``saekit cache`` folders: training rows (repeated epoch
    after epoch when the budget is larger) and held-out rows from another split."""
    from saekit.activations import ActivationCache

    X = ActivationCache(cache).read_all().float()
    Xv = ActivationCache(val_cache).read_all().float()[:n_val]
    return X, Xv, None


def jobs(args, steps: int) -> list[tuple[str, str, dict]]:
    """(framework, label, job overrides) for every run of one data set."""
    base = {"seed": args.seed, "threads": args.threads, "batch": args.batch, "steps": steps, "n": args.n_latents,
            "k": args.k, "dead_tokens": args.dead_tokens}
    peer_warm = max(1, min(1000, steps // 10))
    out = [("saekit", "saekit defaults", {**base, "lr": 0.0, "warmup": 1})]
    if args.old:
        out.append(("saekit", "saekit old defaults", {**base, "lr": 0.0, "warmup": 1, "old": True}))
    if args.prev:
        out.append(("saekit", "saekit knee 8192", {**base, "lr": 0.0, "warmup": 1, "prev": True}))
    for lr in args.saekit_lrs:
        out.append(("saekit", f"saekit lr {lr:g}", {**base, "lr": 0.0, "warmup": 1, "saekit_lr": lr}))
    for text in args.saekit_configs:  # the run's name is "saekit " + the JSON as given (seed_pairs.py --ours)
        out.append(("saekit", f"saekit {text}", {**base, "lr": 0.0, "warmup": 1, "saekit_cfg": json.loads(text)}))
    for lr in args.saelens_lrs:
        out.append(("saelens", f"SAELens lr {lr:g}", {**base, "lr": lr, "warmup": 1, "framework": "saelens"}))
    signum_lr = 5e-3 / (args.n_latents / 2**14) ** 0.5  # sparsify's default
    adam_lr = 2e-4 / (args.n_latents / 2**14) ** 0.5
    for opt, lr in (("signum", signum_lr), ("adam", adam_lr)):
        if opt in args.sparsify_opts:
            out.append(("sparsify", f"sparsify {opt.capitalize()} lr {lr:.3g}",
                        {**base, "lr": lr, "warmup": peer_warm, "optimizer": opt, "framework": "sparsify"}))
    return out


RUNNERS = {"saekit": SAEKIT_DEFAULTS, "saelens": PEER_RUNNER, "sparsify": PEER_RUNNER}


def _launch(fw, label, job, i, name, data, args, pythons, work: Path):
    (work / f"job{i}.json").write_text(json.dumps(job))
    script = work / f"run_{fw}.py"
    script.write_text(RUNNERS[fw])
    out = work / f"{name}_{i}.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT), SAEKIT_ROOT=str(ROOT))
    log = open(work / f"{name}_{i}.log", "w")
    cmd = [str(pythons[fw]), str(script), str(data), str(work / f"job{i}.json"), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT)
    return {"proc": proc, "fw": fw, "label": label, "out": out, "log": log, "load0": os.getloadavg()[0]}


def run_set(name, X, Xv, feats, args, pythons, work: Path, on_row) -> list[dict]:
    """Every run of one data set, at most ``--jobs`` at a time (concurrent runs share the same load)."""
    data = work / f"{name}.safetensors"
    save_file({"x": X.contiguous(), "x_val": Xv.contiguous()}, str(data))
    steps = args.tokens // args.batch
    todo = [(i, *j) for i, j in enumerate(jobs(args, steps)) if j[0] in pythons]
    running, rows = [], []
    while todo or running:
        while todo and len(running) < args.jobs:
            i, fw, label, job = todo.pop(0)
            running.append(_launch(fw, label, job, i, name, data, args, pythons, work))
        time.sleep(2)
        for r in [r for r in running if r["proc"].poll() is not None]:
            running.remove(r)
            stdout = r["proc"].stdout.read()
            r["log"].close()
            if r["proc"].returncode != 0:
                print(f"{r['label']} failed on {name}:\n{Path(r['log'].name).read_text()[-3000:]}", file=sys.stderr)
                continue
            t = json.loads(stdout.strip().splitlines()[-1])["train_s"]
            row = {"data": name, "framework": r["fw"], "run": r["label"], "tokens": steps * args.batch,
                   "tokens_per_s": steps * args.batch / t, "train_s": t,
                   "load_average": [r["load0"], os.getloadavg()[0]]}
            row.update(tvp.metrics(Xv, load_file(str(r["out"])), feats))
            rows.append(row)
            print(json.dumps(row), flush=True)
            on_row(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=1_000_000, help="training tokens of every run")
    ap.add_argument("--rows", type=int, default=2_000_000, help="distinct synthetic training rows (epochs beyond)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n-latents", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--d", type=int, default=64, help="synthetic rows' width (issue 21's row: 128)")
    ap.add_argument("--features", type=int, default=512, help="synthetic planted features (issue 21's row: 1024)")
    ap.add_argument("--dead-tokens", type=int, default=1_000_000)
    ap.add_argument("--saekit-lrs", type=float, nargs="*", default=[], help="also saekit at these fixed rates")
    ap.add_argument("--saekit-configs", nargs="*", default=[],
                    help='also saekit with these overrides, each a JSON object of DictionaryConfig fields and '
                         'an optional "train" object of TrainConfig fields: \'{"b_enc_lr_scale": 2, "train": {"lr": 6.4e-4}}\'')
    ap.add_argument("--saelens-lrs", type=float, nargs="+", default=[1e-3, 4e-3, 1.6e-2])
    ap.add_argument("--sparsify-opts", default="signum,adam")
    ap.add_argument("--old", action="store_true", help="also saekit's defaults before issue 21")
    ap.add_argument("--prev", action="store_true", help="also the first rule of issue 21 (knee at 8192 steps)")
    ap.add_argument("--data", default="synthetic", help="synthetic | lm (needs --cache and --val-cache)")
    ap.add_argument("--cache", default=None, help="`saekit cache` folder of training activations")
    ap.add_argument("--val-cache", default=None, help="`saekit cache` folder of held-out activations")
    ap.add_argument("--seed", type=int, default=0, help="every run's initialisation and batch order (the data stay)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--venvs", default=str(ROOT / "benchmarks" / ".venvs"))
    ap.add_argument("--frameworks", default="saekit,saelens,sparsify")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "defaults_vs_peers.json"))
    args = ap.parse_args()
    pythons: dict[str, Path] = {}
    versions = {}
    for fw in args.frameworks.split(","):
        pythons[fw] = Path(sys.executable) if fw == "saekit" else tvp.ensure_venv(Path(args.venvs), fw)
        versions[fw] = tvp.version_of(pythons[fw], "saekit" if fw == "saekit" else tvp.PEERS[fw])
    n_val = 20_000
    if args.data == "synthetic":
        X, Xv, feats = synthetic_rows(min(args.tokens, args.rows), n_val, d=args.d, n_features=args.features)
    else:
        X, Xv, feats = cached_rows(args.cache, args.val_cache, n_val)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
        "versions": versions, "train_rows": X.shape[0], "epochs": args.tokens / X.shape[0],
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "venvs")},
        "rows": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def on_row(row):  # written after every run: a stopped benchmark keeps what finished
        result["rows"].append(row)
        out.write_text(json.dumps(result, indent=2))

    print(f"{args.data}: {X.shape[0]} training rows, {args.tokens} tokens = {args.tokens / X.shape[0]:.2f} epochs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_set(args.data, X, Xv, feats, args, pythons, Path(tmp), on_row)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
