"""Sparse decoder (and top-k encoder) benchmark: forward + backward time and peak memory.

    .venv/bin/python benchmarks/kernels/bench_decode.py                    # full grid, GPU if present
    .venv/bin/python benchmarks/kernels/bench_decode.py --device cpu --batch 1024   # the CPU run

Grid (defaults = the issue's): d = 768, n ∈ {16k, 32k, 131k}, k ∈ {32, 64, 128}, batch ∈ {4096, 16384}.
Implementations of the decoder, fwd+bwd (grads of vals and W_dec):

- ``dense``            scatter the k codes into a dense [B, n] z, then z @ W_dec (SAELens's way)
- ``saekit-triton``    saekit's Triton kernels (CUDA), grad W_dec by sorted (latent, row) pairs
- ``saekit-triton-atomic``  the same with atomic_add for grad W_dec
- ``saekit-torch``     saekit's torch reference (embedding_bag, SDDMM, CSR matmul)
- ``sparsify-triton``  EleutherAI sparsify's decoder (``sparsify.utils.decoder_impl``: xformers'
  Triton embedding_bag), installed by this script into its own venv (``--venvs``) and run there
- ``sparsify-eager``   sparsify's fallback (``SPARSIFY_DISABLE_TRITON=1``: embedding_bag + autograd)

``--op encode`` times the top-k encoder instead (saekit-dense = dense autograd backward,
saekit-torch / saekit-triton = the sparse backward, saekit-triton-fused = the fused top-k forward
that never writes the [B, n] pre-activations, with the same sparse backward).

Each measurement runs in a fresh process (``worker.py``): warm-up, then the median of ``--reps``
timed fwd+bwd passes (with ``--rounds R`` every implementation is measured R times, interleaved,
and keeps its fastest; ``--stat min`` bases ratios and GB/s on the fastest single pass instead of
the median: the robust choice on a shared, loaded machine); peak memory is CUDA ``max_memory_allocated`` over the inputs (GPU) or the
growth of the process's peak RSS (CPU). Bandwidth: the decoder moves at least

    bytes = 3·B·k·d·s  (W_dec rows read in forward and grad-vals, grad_out rows read for grad W_dec)
          + n·d·s      (grad W_dec written)
          + 3·B·d·s    (out written, grad_out read twice)  + B·k·(8 + 2·s)  (idx, vals, grad vals)

with s the bytes per element; achieved GB/s = bytes / time, and the fraction of peak is that over
the card's peak memory bandwidth (a table below, or ``--peak-gbs``); on CPU over the measured
copy bandwidth of this machine (a 512 MiB tensor copy, read + write). Gathered rows can hit in L2
when n·d·s is small, so the fraction can exceed what DRAM alone would allow.

Results are appended as JSON lines to ``--out`` and printed as a Markdown table (ratios vs dense).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER = HERE / "worker.py"

# Peak DRAM bandwidth of common cards, GB/s (vendor data sheets).
PEAK_GBS = {
    "H200": 4800.0,
    "H100 SXM": 3350.0,
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0,
    "A100-SXM4-40GB": 1555.0,
    "L40S": 864.0,
    "RTX 4090": 1008.0,
}
GPU_IMPLS = ["dense", "saekit-triton", "saekit-triton-atomic", "saekit-torch", "sparsify-triton"]
CPU_IMPLS = ["dense", "saekit-torch", "sparsify-eager"]
ENC_GPU_IMPLS = ["saekit-dense", "saekit-triton", "saekit-triton-fused", "saekit-torch"]
ENC_CPU_IMPLS = ["saekit-dense", "saekit-torch"]
PEERS = {"sparsify": ("eai-sparsify", "sparsify")}


def ensure_venv(root: Path, peer: str) -> Path:
    """A venv with torch 2.13.0 and the peer, created under ``root`` on first use; its python."""
    dist, module = PEERS[peer]
    venv = root / f"kernels-{peer}"
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", f"import {module}"], capture_output=True).returncode == 0:
        return py
    print(f"creating {venv} (torch==2.13.0, then {dist}) ...", file=sys.stderr)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["torch==2.13.0"], check=True)  # first: the peer must not pick another torch
    subprocess.run(pip + [dist], check=True)
    return py


def peak_bandwidth(device: str, python: str) -> tuple[float, str]:
    """(GB/s, how it was obtained) for the device."""
    code = (
        "import torch,time,json\n"
        f"dev=torch.device('{device}')\n"
        "a=torch.empty(128*2**20,dtype=torch.float32,device=dev).fill_(1);b=torch.empty_like(a)\n"
        "name=torch.cuda.get_device_name(dev) if dev.type=='cuda' else ''\n"
        "s=lambda: torch.cuda.synchronize() if dev.type=='cuda' else None\n"
        "b.copy_(a);s();ts=[]\n"
        "for _ in range(5):\n t=time.perf_counter();b.copy_(a);s();ts.append(time.perf_counter()-t)\n"
        "print(json.dumps({'name':name,'gbs':2*a.numel()*4/min(ts)/1e9}))\n"
    )
    out = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    if device.startswith("cuda"):
        for key, gbs in PEAK_GBS.items():
            if key.lower() in out["name"].lower():
                return (
                    gbs,
                    f"{out['name']}: data-sheet peak {gbs:.0f} GB/s (measured copy {out['gbs']:.0f} GB/s)",
                )
        return out["gbs"], f"{out['name']}: measured copy bandwidth {out['gbs']:.0f} GB/s (not in the table)"
    return out["gbs"], f"CPU measured copy bandwidth {out['gbs']:.1f} GB/s (512 MiB tensor copy, read+write)"


def decode_bytes(B: int, n: int, k: int, d: int, s: int) -> int:
    return 3 * B * k * d * s + n * d * s + 3 * B * d * s + B * k * (8 + 2 * s)


def run_worker(python: str, args: argparse.Namespace, op: str, impl: str, B: int, n: int, k: int) -> dict:
    cmd = [
        python, str(WORKER), "--op", op, "--impl", impl, "--B", str(B), "--n", str(n), "--k", str(k),
        "--d", str(args.d), "--dtype", args.dtype, "--device", args.device,
        "--reps", str(args.reps), "--warmup", str(args.warmup),
    ]  # fmt: skip
    # keep the caller's path (carried wheels) ahead of the repository root
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(x for x in (os.environ.get("PYTHONPATH"), str(ROOT)) if x))
    env.pop("SAEKIT_KERNELS", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(op=op, impl=impl, B=B, n=n, k=k, d=args.d, error=err[:200])
    return json.loads(lines[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--op", choices=("decode", "encode"), default="decode")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--n", type=int, nargs="+", default=[16384, 32768, 131072])
    p.add_argument("--k", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--batch", type=int, nargs="+", default=[4096, 16384])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--impls", nargs="+", default=None, help="default: all that can run on the device")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1, help="repeat each measurement, keep the fastest (noisy hosts)")
    p.add_argument(
        "--stat", choices=("median", "min"), default="median",
        help="which time the ratios and GB/s use: the median of reps, or the fastest rep (shared hosts)",
    )  # fmt: skip
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timeout", type=int, default=900, help="seconds per measurement")
    p.add_argument(
        "--dense-max", type=float, default=None,
        help="skip dense (and saekit-dense) where B·n·d exceeds this (CPU default 3e10: minutes per pass)",
    )  # fmt: skip
    p.add_argument("--venvs", default=str(ROOT / "benchmarks" / ".venvs"), help="where the peer venv lives")
    p.add_argument("--peer-python", default=None, help="a python that imports sparsify already (no venv is made)")
    p.add_argument("--no-peers", action="store_true", help="skip sparsify (no venv, no network)")
    p.add_argument("--peak-gbs", type=float, default=None, help="override the peak memory bandwidth, GB/s")
    p.add_argument("--out", default=None, help="JSONL file (default benchmarks/out/kernels/<op>-<host>-<date>.jsonl)")
    args = p.parse_args()

    own_py = sys.executable
    if args.device == "auto":
        probe = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"
        args.device = subprocess.run([own_py, "-c", probe], capture_output=True, text=True).stdout.strip()
    gpu = args.device.startswith("cuda")
    if args.impls is None:
        if args.op == "decode":
            args.impls = GPU_IMPLS if gpu else CPU_IMPLS
        else:
            args.impls = ENC_GPU_IMPLS if gpu else ENC_CPU_IMPLS
    if args.dense_max is None:
        args.dense_max = float("inf") if gpu else 3e10
    if args.no_peers:
        args.impls = [i for i in args.impls if not i.startswith("sparsify")]
    peer_py = None
    if any(i.startswith("sparsify") for i in args.impls):
        peer_py = args.peer_python or str(ensure_venv(Path(args.venvs), "sparsify"))
    if args.peak_gbs:  # given: no copy-bandwidth measurement
        peak, peak_note = args.peak_gbs, f"given: {args.peak_gbs} GB/s"
    else:
        peak, peak_note = peak_bandwidth(args.device, own_py)
    key = "ms" if args.stat == "median" else "ms_min"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    host = platform.node() or "host"
    out = Path(args.out or ROOT / "benchmarks" / "out" / "kernels" / f"{args.op}-{host}-{stamp[:10]}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    s = {"float32": 4, "bfloat16": 2, "float16": 2}[args.dtype]
    cpu_info = f"{os.cpu_count()} CPU threads, {platform.processor() or platform.machine()}"
    print(f"# {args.op} fwd+bwd, {args.dtype}, d={args.d}, {args.device}; {peak_note}; {cpu_info}; {stamp}")
    print("# command: " + " ".join([Path(own_py).name, *sys.argv]))
    print()
    print(f"| B | n | k | impl | ms (median) | ms (min) | × vs dense ({key}) | peak MiB | GB/s | % of peak BW |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    t_start = time.perf_counter()
    for B in args.batch:
        for n in args.n:
            for k in args.k:
                dense_ms = None
                best: dict[str, dict] = {}
                for _ in range(args.rounds):  # impls interleaved; each keeps its fastest round
                    for impl in args.impls:
                        if impl in ("dense", "saekit-dense") and B * n * args.d > args.dense_max:
                            rec = dict(op=args.op, impl=impl, B=B, n=n, k=k, d=args.d, error="not run (--dense-max)")
                        else:
                            py = peer_py if impl.startswith("sparsify") else own_py
                            rec = run_worker(py, args, args.op, impl, B, n, k)
                        if impl not in best or rec.get(key, float("inf")) < best[impl].get(key, float("inf")):
                            best[impl] = rec
                for impl in args.impls:
                    rec = best[impl]
                    rec.update(rounds=args.rounds, date=stamp, host=host, peak_gbs=peak, peak_note=peak_note)
                    if "ms" in rec and args.op == "decode":
                        rec["gbs"] = decode_bytes(B, n, k, args.d, s) / (rec[key] / 1e3) / 1e9
                        rec["bw_fraction"] = rec["gbs"] / peak
                    if impl in ("dense", "saekit-dense") and "ms" in rec:
                        dense_ms = rec[key]
                    with open(out, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(rec) + "\n")
                    if "ms" not in rec:
                        print(f"| {B} | {n} | {k} | {impl} | {rec.get('error', '?')} | | | | | |")
                        continue
                    ratio = f"{dense_ms / rec[key]:.1f}" if dense_ms else "–"
                    dense_cell = "(dense)" if impl in ("dense", "saekit-dense") else ratio
                    gbs = f"{rec['gbs']:.3g}" if "gbs" in rec else "–"
                    frac = f"{100 * rec['bw_fraction']:.0f}%" if "bw_fraction" in rec else "–"
                    print(
                        f"| {B} | {n} | {k} | {impl} | {rec['ms']:.1f} | {rec['ms_min']:.1f} | {dense_cell} "
                        f"| {rec['peak_mb']:.0f} "
                        f"| {gbs} | {frac} |",
                        flush=True,
                    )
    print(f"\n# {time.perf_counter() - t_start:.0f} s in all; records appended to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
