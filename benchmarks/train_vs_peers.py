"""Train top-k SAEs with saekit, SAELens (TopKTrainingSAE) and sparsify (SparseCoder) side by side.

Same activations, width, k, token budget, batch size, learning rate and warm-up for all three;
each framework runs in its own process (the peers in their own venvs, created on first use with
``pip install torch==2.13.0`` then the peer) and writes its held-out reconstructions and code
statistics; this script computes every metric with the same code:

- tokens/s of the training loop (batches already in memory; start-up excluded),
- FVU on held-out activations, L0, dead fraction (latents that never fire on the held-out set),
- on synthetic data with known features: MMCS and the fraction of features matched at cos > 0.9.

The peers are driven by a minimal loop that mirrors their own trainers: SAELens's
``training_forward_pass`` (MSE + its AuxK) with Adam and grad-norm clipping 1.0; sparsify's
``forward`` (FVU + auxk_alpha·AuxK), its parallel-gradient removal and decoder renormalisation.

Run:  .venv/bin/python benchmarks/train_vs_peers.py [--model /path/to/saekit/model] [--tokens 300000]
      [--venvs /tmp/saekit-interop] [--threads 2] [--out benchmarks/out/train_vs_peers.json]
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

PEERS = {"saelens": "sae-lens", "sparsify": "eai-sparsify"}

# One runner per framework. argv: data.safetensors, job.json, out.safetensors. Prints JSON timing.
COMMON = r"""
import json, sys, time, torch
from safetensors.torch import load_file, save_file
data = load_file(sys.argv[1]); job = json.load(open(sys.argv[2]))
torch.manual_seed(job["seed"]); torch.set_num_threads(job["threads"])
X, Xv = data["x"], data["x_val"]
B, steps, n, k, lr, warm = job["batch"], job["steps"], job["n"], job["k"], job["lr"], job["warmup"]
perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(job["seed"]))
def batch(i):
    j = (i * B) % X.shape[0]
    idx = perm[j:j + B]
    if idx.numel() < B:
        idx = torch.cat([idx, perm[: B - idx.numel()]])
    return X[idx]
def lr_at(i):
    return lr * min(1.0, (i + 1) / warm)
def finish(codes, xhat, W_dec, t_train):
    fires = (codes != 0).sum(0)
    save_file({"xhat": xhat.contiguous(), "fires": fires.float(), "l0": (codes != 0).sum(1).float(),
               "W_dec": W_dec.contiguous()}, sys.argv[3])
    print(json.dumps({"train_s": t_train}))
"""

SAEKIT_RUNNER = COMMON + r"""
import saekit
from saekit.config import DictionaryConfig, TrainConfig
from saekit.training import Trainer, TensorSource
cfg = DictionaryConfig(kind="topk", d_in=X.shape[1], n_latents=n, k=k)
# the same batches as the peers: an unshuffled source over the pre-permuted rows
src = TensorSource(X[perm], shuffle=False)
tcfg = TrainConfig(batch_size=B, total_tokens=B * steps, lr=lr, lr_warmup_steps=warm, lr_decay_fraction=0.0,
                   dead_tokens=job["dead_tokens"], device="cpu", log_every=0)
tr = Trainer(cfg, src, tcfg, progress=False)
batches = [tr.next_batch() for _ in range(steps)]
t0 = time.perf_counter()
for x, y in batches:
    tr.step(x, y)
t = time.perf_counter() - t0
sae = tr.finish()[0]  # the dictionary fit() returns: the tail's mean where the trainer averages
with torch.no_grad():
    z = sae.encode(Xv); xhat = sae(Xv)
finish(z, xhat, sae.W_dec.detach(), t)
"""

# SAELens and sparsify through benchmarks/peer_steps.py (the one copy of their step bodies)
PEER_RUNNER = COMMON + r"""
import os
sys.path.insert(0, os.path.join(os.environ["SAEKIT_ROOT"], "benchmarks"))
import peer_steps
if job["framework"] == "saelens":  # SAELens counts forward passes since a latent fired
    m = peer_steps.SAELensTopK(X.shape[1], n, k, lr, dead_steps=max(1, job["dead_tokens"] // B))
else:
    m = peer_steps.SparsifyTopK(X.shape[1], n, k, lr, optimizer=job.get("optimizer", "adam"),
                                dead_tokens=job["dead_tokens"])
batches = [batch(i) for i in range(steps)]
t0 = time.perf_counter()
for i, x in enumerate(batches):
    m.set_lr(lr_at(i))
    m.step(x)
t = time.perf_counter() - t0
z, xhat, W = m.evaluate(Xv)
finish(z, xhat, W, t)
"""

RUNNERS = {"saekit": SAEKIT_RUNNER, "saelens": PEER_RUNNER, "sparsify": PEER_RUNNER}


def ensure_venv(root: Path, peer: str) -> Path:
    """A venv with torch 2.13.0 and the peer; created (and reused) under ``root``."""
    py = root / peer / "bin" / "python"
    if py.exists():
        return py
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "venv", str(root / peer)], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", PEERS[peer]], check=True)
    return py


def version_of(py: Path, dist: str) -> str:
    code = f"from importlib.metadata import version; print(version({dist!r}))"
    return subprocess.run([py, "-c", code], capture_output=True, text=True).stdout.strip()


def synthetic_data(n_train: int, n_val: int):
    from synthetic import sparse_feature_data

    X, feats = sparse_feature_data(n=n_train + n_val, d=64, n_features=512, mean_active=5.0, seed=0)
    return X[:n_train], X[n_train:], feats


def lm_residuals(model_dir: str | None, n_tokens: int):
    """Residual-stream activations (blocks.0.hook_resid_post) of a tiny LM over the built-in corpus."""
    from saekit.activations import ActivationStream
    from saekit.data import load_corpus, pack_tokens_with_docs
    from saekit.models import load_model

    handle = load_model(model_dir, device="cpu")
    n_ctx = int(handle.model.cfg.n_ctx)
    tokens, docs = pack_tokens_with_docs(load_corpus("train"), handle.tokenizer, n_ctx, bos=True)
    stream = ActivationStream(handle, tokens, "blocks.0.hook_resid_post", doc_ids=docs, seed=0,
                              buffer_tokens=1 << 15, prefetch=False)
    X = torch.cat([stream.next_batch(8192) for _ in range((n_tokens + 8191) // 8192)])[:n_tokens]
    stream.close()
    return X


def metrics(x_val: torch.Tensor, res: dict, feats: torch.Tensor | None) -> dict:
    xhat = res["xhat"]
    out = {
        "fvu": float((xhat - x_val).pow(2).sum() / (x_val - x_val.mean(0)).pow(2).sum()),
        "l0": float(res["l0"].mean()),
        "dead_fraction": float((res["fires"] == 0).float().mean()),
    }
    if feats is not None:
        from synthetic import feature_recovery

        out["mmcs"], out["matched_0.9"] = feature_recovery(feats, res["W_dec"])
    return out


def run_all(name, X, Xv, feats, args, pythons, work: Path) -> list[dict]:
    data = work / f"{name}.safetensors"
    save_file({"x": X.contiguous(), "x_val": Xv.contiguous()}, str(data))
    steps = args.tokens // args.batch
    job = {"seed": 0, "threads": args.threads, "batch": args.batch, "steps": steps, "n": args.n_latents,
           "k": args.k, "lr": args.lr, "warmup": args.warmup, "dead_tokens": args.dead_tokens}
    rows = []
    for fw, py in pythons.items():
        (work / "job.json").write_text(json.dumps({**job, "framework": fw}))
        script = work / f"run_{fw}.py"
        script.write_text(RUNNERS[fw])
        out = work / f"{name}_{fw}.safetensors"
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), SAEKIT_NO_PROGRESS="1", SAEKIT_ROOT=str(ROOT))
        r = subprocess.run([str(py), str(script), str(data), str(work / "job.json"), str(out)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        if r.returncode != 0:
            print(f"{fw} failed on {name}:\n{r.stderr[-3000:]}", file=sys.stderr)
            continue
        t = json.loads(r.stdout.strip().splitlines()[-1])["train_s"]
        row = {"data": name, "framework": fw, "tokens_per_s": steps * args.batch / t, "train_s": t}
        row.update(metrics(Xv, load_file(str(out)), feats))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="saekit model folder for the real-LM residuals (skip if absent)")
    ap.add_argument("--tokens", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--n-latents", type=int, default=1024)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--dead-tokens", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--venvs", default="/tmp/saekit-interop")
    ap.add_argument("--frameworks", default="saekit,saelens,sparsify")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "train_vs_peers.json"))
    args = ap.parse_args()

    pythons: dict[str, Path] = {}
    versions = {}
    for fw in args.frameworks.split(","):
        if fw == "saekit":
            pythons[fw] = Path(sys.executable)
            versions[fw] = version_of(Path(sys.executable), "saekit")
        else:
            pythons[fw] = ensure_venv(Path(args.venvs), fw)
            versions[fw] = version_of(pythons[fw], PEERS[fw])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        X, Xv, feats = synthetic_data(args.tokens // 2, 20_000)
        rows += run_all("synthetic", X, Xv, feats, args, pythons, work)
        if args.model:
            R = lm_residuals(args.model, args.tokens // 2 + 20_000)
            rows += run_all("lm_resid", R[: args.tokens // 2], R[args.tokens // 2 :], None, args, pythons, work)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
        "load_average": os.getloadavg(),
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
