"""The stages of benchmarks/gpu/run.sh: each appends JSON lines (with "stage") to OUTDIR/results.jsonl.

    python benchmarks/gpu/stages.py STAGE --out OUTDIR [--dry]

``--dry`` (run.sh sets it from SAEKIT_GPU_DRYRUN=1): tiny sizes on CPU, no peers; a stage that
needs CUDA writes ``status: "skipped: no CUDA"`` and the parts that can run on CPU still run.
``mark`` records how a stage ended (run.sh's timeout cap); ``summary`` writes OUTDIR/summary.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
CUDA_TESTS = ["tests/test_kernels.py", "tests/test_kernels_triton.py", "tests/test_io.py", "tests/test_training.py"]


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def emit(out: Path, stage: str, **rec) -> None:
    with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"stage": stage, **rec}) + "\n")


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    """A child that shares our environment; its output goes to run.sh's log."""
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(proc.stdout[-6000:] + proc.stderr[-3000:], flush=True)
    return proc


def stage_tests(a) -> None:
    missing = [t for t in CUDA_TESTS if not (ROOT / t.split("::")[0]).exists()]
    if a.dry or missing:  # the dry run only checks the files are there (the suite runs them on CPU anyway)
        status = f"failed: missing {missing}" if missing else "skipped: no CUDA (dry run: test files present)"
        emit(a.out, "tests", status=status, cuda=False, targets=CUDA_TESTS)
        return
    cuda = has_cuda()
    cmd = [PY, "-m", "pytest", *CUDA_TESTS, "-v", "-p", "no:cacheprovider", "-rfE"]
    print("$ " + " ".join(cmd), flush=True)
    try:  # pytest gets its own budget under the stage's cap, so a slow suite still leaves its counts
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=a.budget)
        text, status = proc.stdout, "ok" if proc.returncode == 0 else f"failed rc={proc.returncode}"
    except subprocess.TimeoutExpired as e:
        text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        status = f"timeout after {a.budget} s (counts are of the tests that finished)"
    print(text[-8000:], flush=True)
    results = re.findall(r"::(\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", text)
    counts = {w.lower(): sum(1 for _, r in results if r == w) for w in {r for _, r in results}}
    failed = [name for name, r in results if r in ("FAILED", "ERROR")]
    emit(a.out, "tests", status=status, cuda=cuda, note="with CUDA" if cuda else "no CUDA: the CPU paths only",
         counts=counts, failed=failed[:20])  # fmt: skip


def _bench(a, op: str, dtype: str, grid: dict) -> None:
    tmp = Path(tempfile.gettempdir()) / f"saekit-gpu-{op}-{dtype}.jsonl"  # outside OUTDIR: its file count is capped
    tmp.unlink(missing_ok=True)
    cmd = [PY, "benchmarks/kernels/bench_decode.py", "--op", op, "--dtype", dtype, "--out", str(tmp),
           "--timeout", "120", *sum(([f"--{k}", *map(str, v)] for k, v in grid.items()), [])]  # fmt: skip
    if a.dry:
        cmd += ["--device", "cpu", "--no-peers", "--reps", "1", "--warmup", "0", "--d", "32", "--peak-gbs", "1"]
    else:
        cmd += ["--device", "cuda", "--reps", "10", "--warmup", "3", "--stat", "min", "--peer-python", PY]
    try:
        run(cmd)
    finally:  # a timeout kills us here too: run.sh's cap; what was measured is kept
        for line in tmp.read_text().splitlines() if tmp.exists() else []:
            emit(a.out, op, **{"dtype": dtype, **json.loads(line)})
        tmp.unlink(missing_ok=True)


def stage_decode(a) -> None:
    if a.dry:
        emit(a.out, "decode", status="skipped: no CUDA (dry run: CPU implementations at tiny sizes)")
        _bench(a, "decode", "float32", {"n": [256], "k": [8], "batch": [64], "impls": ["saekit-torch"]})
        return
    impls = ["dense", "saekit-triton", "saekit-triton-atomic", "saekit-torch", "sparsify-triton"]
    _bench(a, "decode", a.dtype, {"n": [16384, 32768, 131072], "k": [32, 128], "batch": [4096], "impls": impls})


def stage_encode(a) -> None:
    if a.dry:
        emit(a.out, "encode", status="skipped: no CUDA (dry run: CPU implementations at tiny sizes)")
        _bench(a, "encode", "float32", {"n": [256], "k": [8], "batch": [64], "impls": ["saekit-torch"]})
        return
    _bench(a, "encode", a.dtype, {"n": [32768, 131072], "k": [32, 128], "batch": [4096]})


def stage_train_step(a) -> None:
    """saekit's own step by decode backend, then saekit / sparsify / SAELens whole steps."""
    size = ["--d", "32", "--n", "256", "--k", "8", "--batch", "64"] if a.dry else ["--d", "768", "--n", "32768", "--k", "32", "--batch", "4096"]
    tmp = Path(tempfile.gettempdir()) / "saekit-gpu-train_step.jsonl"
    tmp.unlink(missing_ok=True)
    dev = ["--device", "cpu"] if a.dry else ["--device", "cuda"]
    light = ["--reps", "1", "--rounds", "1", "--backends", "torch"] if a.dry else ["--reps", "10", "--rounds", "2"]
    run([PY, "benchmarks/kernels/bench_train_step.py", *dev, *size, *light, "--out", str(tmp)])
    for line in tmp.read_text().splitlines() if tmp.exists() else []:
        emit(a.out, "train_step", kind="saekit backend", **json.loads(line))
    tmp.unlink(missing_ok=True)
    if a.dry:
        emit(a.out, "peer_step", status="skipped: no CUDA (dry run: saekit only, no peers)")
    for fw in ["saekit"] if a.dry else ["saekit", "sparsify", "saelens"]:
        reps = ["--reps", "1", "--warmup", "0"] if a.dry else []
        proc = run([PY, "benchmarks/gpu/train_step_peers.py", "--framework", fw, *dev, *size, *reps])
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        rec = json.loads(lines[-1]) if lines else {"framework": fw, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
        emit(a.out, "peer_step", **rec)


def stage_e2e(a) -> None:
    """Train a TopK SAE from a GPU activation stream on a tiny model; the trainer's wait fraction."""
    import torch

    import saekit
    from saekit.activations import ActivationStream
    from saekit.config import DictionaryConfig, TrainConfig
    from saekit.models.build import build_model

    cuda = has_cuda()
    dev = "cuda" if cuda else "cpu"
    if not cuda:
        emit(a.out, "e2e", status="skipped: no CUDA (dry run: the same path on CPU at tiny sizes)")
    d, layers, ctx, seqs, batch, tokens = (64, 2, 32, 64, 128, 4096) if a.dry else (512, 4, 256, 4096, 4096, 2_000_000)
    model = build_model(dict(n_layers=layers, d_model=d, n_heads=8, d_head=d // 8, d_mlp=4 * d, n_ctx=ctx,
                             d_vocab=1024, act_fn="gelu", normalization_type="LN", seed=0)).eval().to(dev)  # fmt: skip
    toks = torch.randint(1, 1024, (seqs, ctx), generator=torch.Generator().manual_seed(0))
    stream = ActivationStream(model, toks, "blocks.1.hook_resid_post", buffer_tokens=min(1 << 18, seqs * ctx // 2),
                              buffer_device=dev, device=dev, seed=0)  # fmt: skip
    cfg = DictionaryConfig(kind="topk", d_in=d, n_latents=8 * d, k=16)
    tcfg = TrainConfig(batch_size=batch, total_tokens=tokens, device=dev, log_every=0)
    t0 = time.perf_counter()
    saekit.train(cfg, stream, tcfg, progress=False)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    emit(a.out, "e2e", device=dev, d_model=d, n_layers=layers, tokens=tokens, batch=batch, seconds=wall,
         tokens_per_s=tokens / wall, wait_fraction=stream.wait_fraction)  # fmt: skip
    stream.close()


def stage_nccl(a) -> None:
    if a.dry:  # not even a torch import: the dry run has no CUDA by definition
        emit(a.out, "nccl", status="skipped: no CUDA (dry run)")
        return
    import torch

    if not has_cuda():
        emit(a.out, "nccl", status="skipped: no CUDA")
        return
    if torch.cuda.device_count() < 2:
        emit(a.out, "nccl", status=f"skipped: {torch.cuda.device_count()} GPU on this machine, NCCL needs >= 2")
        return
    proc = run([PY, "benchmarks/bench_distributed.py", "--device", "cuda", "--ranks", "2", "--d", "768",
                "--n", "32768", "--k", "32", "--batch", "4096"])  # fmt: skip
    res = ROOT / "benchmarks" / "out" / "distributed.json"
    if proc.returncode == 0 and res.exists():
        for mode, m in json.loads(res.read_text())["modes"].items():
            emit(a.out, "nccl", mode=mode, **m)
    else:
        emit(a.out, "nccl", status=f"failed rc={proc.returncode}", error=(proc.stderr.strip().splitlines() or ["?"])[-1][:200])


def stage_mark(a) -> None:
    rc = a.rc
    status = "ok" if rc == 0 else ("timeout" if rc in (124, 137) else f"failed rc={rc}")
    emit(a.out, "stage_end", name=a.name, status=status, seconds=a.seconds, cap_s=a.cap)


STAGES = {"tests": stage_tests, "decode": stage_decode, "encode": stage_encode, "train_step": stage_train_step,
          "e2e": stage_e2e, "nccl": stage_nccl, "mark": stage_mark}  # fmt: skip


def main() -> int:
    from summary import write_summary  # benchmarks/gpu/summary.py (the script's folder is on sys.path)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=[*STAGES, "summary"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dry", action="store_true", default=os.environ.get("SAEKIT_GPU_DRYRUN") == "1")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--budget", type=int, default=70, help="tests: seconds pytest may take")
    p.add_argument("--name", default="")
    p.add_argument("--rc", type=int, default=0)
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--cap", type=int, default=0)
    a = p.parse_args()
    # run.sh's `timeout` sends SIGTERM: unwind (finally blocks keep what was measured)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    a.out.mkdir(parents=True, exist_ok=True)
    if a.stage == "summary":
        write_summary(a.out)
    else:
        STAGES[a.stage](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
