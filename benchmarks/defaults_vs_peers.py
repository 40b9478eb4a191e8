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
src = TensorSource(X[perm], shuffle=False)  # the peers' batches
tcfg = TrainConfig(batch_size=B, total_tokens=B * steps, device="cpu", log_every=0)  # nothing else set
if job.get("old"):  # the defaults before issue 21: Gao's rate, 100 warm-up steps
    tcfg = tcfg.replace(lr=2e-4 / (n / 16384) ** 0.5, lr_warmup_steps=100, normalize=False)
tr = Trainer(cfg, src, tcfg, progress=False)
batches = [tr.next_batch() for _ in range(steps)]
t0 = time.perf_counter()
for x, y in batches:
    tr.step(x, y)
t = time.perf_counter() - t0
sae = tr.runs[0].sae
with torch.no_grad():
    z = sae.encode(Xv); xhat = sae(Xv)
finish(z, xhat, sae.W_dec.detach(), t)
"""

SPARSIFY_OPT = tvp.COMMON + r"""
from sparsify import SparseCoder, SparseCoderConfig
sae = SparseCoder(X.shape[1], SparseCoderConfig(num_latents=n, k=k), device="cpu", dtype=torch.float32)
signum = job["optimizer"] == "signum"
if signum:  # sparsify's trainer: schedule-free SignSGD, momentum 0.95, constant lr
    from schedulefree import ScheduleFreeWrapper
    from sparsify.sign_sgd import SignSGD
    opt = ScheduleFreeWrapper(SignSGD([dict(params=sae.parameters(), lr=lr)]), momentum=0.95)
    opt.train()
else:
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
since = torch.zeros(n, dtype=torch.long)
batches = [batch(i) for i in range(steps)]
t0 = time.perf_counter()
for i, x in enumerate(batches):
    if i == 0:
        with torch.no_grad():
            sae.b_dec.data = x.mean(0)
    if not signum:
        for g in opt.param_groups:
            g["lr"] = lr_at(i)
    out = sae(x, dead_mask=since > job["dead_tokens"])
    loss = out.fvu + (1 / 32) * out.auxk_loss
    loss.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    opt.step(); opt.zero_grad()
    sae.set_decoder_norm_to_unit_norm()
    with torch.no_grad():
        since += x.shape[0]; since[out.latent_indices.flatten()] = 0
t = time.perf_counter() - t0
if signum:
    opt.eval()  # schedule-free: evaluate at the averaged weights
    sae.set_decoder_norm_to_unit_norm()
with torch.no_grad():
    enc = sae.encode(Xv)
    z = torch.zeros(Xv.shape[0], n).scatter_(1, enc.top_indices, enc.top_acts)
    xhat = sae.decode(enc.top_acts, enc.top_indices)
finish(z, xhat, sae.W_dec.detach(), t)
"""


def synthetic_rows(n_rows: int, n_val: int, d: int = 64, n_features: int = 512, mean_active: float = 5.0):
    """tests/synthetic.py's world, drawn in chunks (so 1M+ rows fit in memory): the same features."""
    from synthetic import sparse_feature_data

    _, feats = sparse_feature_data(n=1, d=d, n_features=n_features, mean_active=mean_active, seed=0)
    gen = torch.Generator().manual_seed(1)
    p = 1.0 / torch.arange(1, n_features + 1).float() ** 0.5
    p = (p / p.sum() * mean_active).clamp(max=1.0)
    chunks = []
    for s in range(0, n_rows + n_val, 50_000):
        m = min(50_000, n_rows + n_val - s)
        active = torch.rand(m, n_features, generator=gen) < p
        mags = torch.rand(m, n_features, generator=gen) * 1.5 + 0.5
        chunks.append((active * mags) @ feats)
    X = torch.cat(chunks)
    return X[:n_rows], X[n_rows:], feats


def tiny_lm_rows(n_rows: int, n_val: int, hook: str):
    from tiny_models import save_tiny_model_folder

    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_model_folder(tmp)
        R = _resid(tmp, n_rows + n_val, hook)
    return R[:n_rows], R[n_rows:], None


def _resid(model_dir: str, n_tokens: int, hook: str) -> torch.Tensor:
    from saekit.activations import ActivationStream
    from saekit.data import load_corpus, pack_tokens_with_docs
    from saekit.models import load_model

    handle = load_model(model_dir, device="cpu")
    tokens, docs = pack_tokens_with_docs(load_corpus("train"), handle.tokenizer, int(handle.model.cfg.n_ctx), bos=True)
    stream = ActivationStream(handle, tokens, hook, doc_ids=docs, seed=0, buffer_tokens=1 << 16, prefetch=False)
    X = torch.cat([stream.next_batch(8192) for _ in range((n_tokens + 8191) // 8192)])[:n_tokens]
    stream.close()
    return X


def jobs(args, steps: int) -> list[tuple[str, str, dict]]:
    """(framework, label, job overrides) for every run of one data set."""
    base = {"seed": 0, "threads": args.threads, "batch": args.batch, "steps": steps, "n": args.n_latents,
            "k": args.k, "dead_tokens": args.dead_tokens}
    peer_warm = max(1, min(1000, steps // 10))
    out = [("saekit", "saekit defaults", {**base, "lr": 0.0, "warmup": 1}),
           ("saekit", "saekit old defaults", {**base, "lr": 0.0, "warmup": 1, "old": True})]
    for lr in args.saelens_lrs:
        out.append(("saelens", f"SAELens lr {lr:g}", {**base, "lr": lr, "warmup": 1}))
    signum_lr = 5e-3 / (args.n_latents / 2**14) ** 0.5  # sparsify's default
    out.append(("sparsify", f"sparsify Signum lr {signum_lr:.3g}", {**base, "lr": signum_lr, "warmup": peer_warm, "optimizer": "signum"}))
    adam_lr = 2e-4 / (args.n_latents / 2**14) ** 0.5
    out.append(("sparsify", f"sparsify Adam lr {adam_lr:.3g}", {**base, "lr": adam_lr, "warmup": peer_warm, "optimizer": "adam"}))
    return out


RUNNERS = {"saekit": SAEKIT_DEFAULTS, "saelens": tvp.SAELENS_RUNNER, "sparsify": SPARSIFY_OPT}


def run_set(name, X, Xv, feats, args, pythons, work: Path) -> list[dict]:
    data = work / f"{name}.safetensors"
    save_file({"x": X.contiguous(), "x_val": Xv.contiguous()}, str(data))
    steps = args.tokens // args.batch
    rows = []
    for fw, label, job in jobs(args, steps):
        if fw not in pythons:
            continue
        (work / "job.json").write_text(json.dumps(job))
        script = work / f"run_{fw}.py"
        script.write_text(RUNNERS[fw])
        out = work / f"{name}_{fw}.safetensors"
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT))
        r = subprocess.run([str(pythons[fw]), str(script), str(data), str(work / "job.json"), str(out)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        if r.returncode != 0:
            print(f"{label} failed on {name}:\n{r.stderr[-3000:]}", file=sys.stderr)
            continue
        t = json.loads(r.stdout.strip().splitlines()[-1])["train_s"]
        row = {"data": name, "framework": fw, "run": label, "tokens_per_s": steps * args.batch / t, "train_s": t,
               "load_average": os.getloadavg()[0]}
        row.update(tvp.metrics(Xv, load_file(str(out)), feats))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--n-latents", type=int, default=1024)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--dead-tokens", type=int, default=200_000)
    ap.add_argument("--saelens-lrs", type=float, nargs="+", default=[2e-3, 8e-3])
    ap.add_argument("--hook", default="blocks.1.hook_resid_post")
    ap.add_argument("--data", default="synthetic,lm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--venvs", default=str(ROOT / "benchmarks" / ".venvs"))
    ap.add_argument("--frameworks", default="saekit,saelens,sparsify")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "defaults_vs_peers.json"))
    args = ap.parse_args()
    pythons: dict[str, Path] = {}
    versions = {}
    for fw in args.frameworks.split(","):
        pythons[fw] = Path(sys.executable) if fw == "saekit" else tvp.ensure_venv(Path(args.venvs), fw)
        versions[fw] = tvp.version_of(pythons[fw], "saekit" if fw == "saekit" else tvp.PEERS[fw])
    rows = []
    n_val = 20_000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.data.split(","):
            X, Xv, feats = synthetic_rows(args.tokens, n_val) if name == "synthetic" else tiny_lm_rows(args.tokens, n_val, args.hook)
            rows += run_set(name, X, Xv, feats, args, pythons, work)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
        "versions": versions,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "venvs")},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
