"""Activation cache benchmark: write, raw disk read, shuffled read, live stream, and SAELens.

Run:  .venv/bin/python benchmarks/bench_cache.py [--tokens 1000000] [--work /tmp/saekit-bench-cache]
      [--saelens-venv /tmp/saekit-interop/saelens] [--skip-saelens] [--skip-stream] [--cold-passes 3] [--warm-passes 20] [--reuse]

One run measures, on the same model (a random-weight transformer-lens model in a saekit model
folder), the same tokens and the same disk:
- saekit cache write (tokens/s, GB/s, peak RSS);
- raw sequential read of the shard files with plain 8 MiB reads (the disk's speed);
- the shuffled reader (ActivationCache, one epoch, batch 4096) as a fraction of raw speed,
  cold (page cache dropped with posix_fadvise; raw and shuffled passes alternated, median
  reported) and warm (files in the page cache: a memory copy, not the disk);
- the live ActivationStream: model-forward tokens/s and the trainer's wait fraction while a
  top-k SAE trains on it;
- SAELens CacheActivationsRunner + ActivationsStore reading that cache, in a separate venv
  (torch 2.13.0 then sae-lens), with the same model weights and tokens.
Each phase runs in its own process so peak RSS (VmHWM - baseline after imports) is its own.
Results: JSON to --work/results.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOOK = "blocks.1.hook_resid_post"
N_CTX = 128


def rss(field: str = "VmRSS") -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def drop_page_cache(files: list[Path]) -> None:
    """Evict the files from the page cache (clean pages only, hence fsync first) for a cold read."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_read(files: list[Path], passes: int = 1) -> tuple[float, int]:
    """Seconds per pass and bytes per pass of reading the files in order with 8 MiB reads."""
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    total = 0
    t = time.perf_counter()
    for _ in range(passes):
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while n := fh.readinto(view):
                    total += n
    return (time.perf_counter() - t) / passes, total // passes


def median_run(runs: list[dict]) -> dict:
    """The run with the median time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda x: x["seconds"])[(len(runs) - 1) // 2]


# -- phases run as children ---------------------------------------------------------------------


def child_prepare(work: Path, tokens: int) -> dict:
    """A saekit model folder with random weights and the packed tokens (saved for every phase)."""
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from saekit.data import default_tokenizer, load_corpus, pack_tokens_with_docs
    from saekit.models.handle import ModelHandle
    from saekit.models.store import save_model_folder

    tok = default_tokenizer(4096)
    tl_args = {
        "n_layers": 2, "d_model": 256, "n_heads": 8, "d_head": 32, "d_mlp": 1024, "n_ctx": N_CTX,
        "d_vocab": 4096, "act_fn": "gelu", "normalization_type": "LN", "seed": 0,
    }  # fmt: skip
    model = HookedTransformer(HookedTransformerConfig(**tl_args))
    save_model_folder(
        ModelHandle(model, tok, "transformer_lens", "bench", "random", work / "model"), tl_args, {"name": "bench"}
    )
    rows = -(-tokens // (N_CTX - 1))
    docs = load_corpus("train")
    t, d = pack_tokens_with_docs(docs * 8, tok, N_CTX, max_rows=rows)  # repeat the corpus if needed
    if t.shape[0] < rows:
        raise SystemExit(f"corpus too small for {tokens} tokens")
    save_file({"tokens": t.contiguous(), "doc_ids": d.contiguous()}, str(work / "tokens.safetensors"))
    return {"rows": int(t.shape[0])}


def child_write(work: Path, tokens: int) -> dict:
    import torch
    from safetensors.torch import load_file

    from saekit.activations import build_cache
    from saekit.models import load_model

    torch.manual_seed(0)
    handle = load_model(work / "model")
    data = load_file(str(work / "tokens.safetensors"))
    base = rss()
    t = time.perf_counter()
    build_cache(
        handle, data["tokens"], [HOOK], work / "saekit_cache", doc_ids=data["doc_ids"], n_tokens=tokens,
        batch_size=32, shard_tokens=65536, overwrite=True, progress=False,
    )  # fmt: skip
    return {"seconds": time.perf_counter() - t, "peak_rss": rss("VmHWM") - base}


def child_read(work: Path, buffer_tokens: int, verify: bool, epochs: int = 1) -> dict:
    """One reader, ``epochs`` epochs; seconds are per epoch (opening included once)."""
    import torch

    from saekit.activations import ActivationCache

    base = rss()
    t = time.perf_counter()
    cache = ActivationCache(work / "saekit_cache", buffer_tokens=buffer_tokens, seed=0, verify=verify, progress=False)
    t_open = time.perf_counter() - t
    n = 0
    s = torch.zeros(())
    for batch in cache.batches(4096, epochs=epochs):
        n += batch.shape[0]
        s += batch[0, 0]  # touch the batch
    seconds = (time.perf_counter() - t) / epochs
    n //= epochs
    out = {
        "seconds": seconds, "open_seconds": t_open, "rows": n, "peak_rss": rss("VmHWM") - base,
        "wait_fraction": cache.wait_fraction, "chunk_tokens": cache.chunk_tokens,
    }  # fmt: skip
    cache.close()
    return out


def child_stream(work: Path, tokens: int) -> dict:
    import torch
    from safetensors.torch import load_file

    from saekit.activations import ActivationStream, HookpointReader
    from saekit.config import DictionaryConfig
    from saekit.dictionaries import create
    from saekit.models import load_model

    torch.manual_seed(0)
    handle = load_model(work / "model")
    toks = load_file(str(work / "tokens.safetensors"))["tokens"]
    toks = toks[: -(-min(tokens, 60_000) // (N_CTX - 1))]  # the stream phase is model-bound on CPU
    # forward alone: the ceiling of a live stream
    reader = HookpointReader(handle, [HOOK])
    t = time.perf_counter()
    for i in range(0, toks.shape[0], 32):
        reader(toks[i : i + 32])
    fwd = toks.numel() / (time.perf_counter() - t)
    sae = create(DictionaryConfig(kind="topk", d_in=256, n_latents=4096, k=32))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    # a buffer of 4 batches, half refilled every 2 steps: the producer must keep pace with the trainer
    stream = ActivationStream(handle, toks, HOOK, buffer_tokens=1 << 14, refill_fraction=0.5, batch_seqs=32)
    steps = toks.numel() // 4096
    t = time.perf_counter()
    for _ in range(steps):
        x = stream.next_batch(4096)
        loss = (sae(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t
    out = {
        "forward_tokens_per_s": fwd, "train_tokens_per_s": steps * 4096 / seconds,
        "wait_fraction": stream.wait_fraction, "steps": steps,
    }  # fmt: skip
    stream.close()
    # the same training on precomputed activations: the trainer's own speed
    xs = torch.randn(4096, 256)
    t = time.perf_counter()
    for _ in range(min(steps, 20)):
        loss = (sae(xs) - xs).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out["train_only_tokens_per_s"] = min(steps, 20) * 4096 / (time.perf_counter() - t)
    return out


SAELENS_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import torch
    from safetensors.torch import load_file

    def rss(field="VmRSS"):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    phase, work, tokens, hook = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    import sae_lens.cache_activations_runner as car
    from sae_lens.training.activations_store import ActivationsStore
    import datasets

    tl = json.load(open(f"{work}/model/tl_config.json"))
    model = HookedTransformer(HookedTransformerConfig(**tl))
    model.load_state_dict(load_file(f"{work}/model/model.safetensors"))
    model.eval()
    out_dir = f"{work}/saelens_cache"
    n_ctx = tl["n_ctx"]
    if phase == "write":
        import shutil
        shutil.rmtree(out_dir, ignore_errors=True)
        toks = load_file(f"{work}/tokens.safetensors")["tokens"]
        ds = datasets.Dataset.from_dict({"input_ids": toks.tolist()})
        car.load_model = lambda **kw: model  # same weights as saekit's run
        cfg = car.CacheActivationsRunnerConfig(
            dataset_path="unused", model_name="bench", model_batch_size=32, hook_name=hook, d_in=tl["d_model"],
            training_tokens=tokens, context_size=n_ctx, new_cached_activations_path=out_dir, shuffle=True,
            dtype="float32", device="cpu", streaming=False, prepend_bos=False,
            # one buffer of exactly `tokens` rows (SAELens rounds the token count up to whole buffers)
            buffer_size_gb=(tokens * tl["d_model"] * 4 + 512) / 1e9,
        )
        base = rss()
        t = time.perf_counter()
        car.CacheActivationsRunner(cfg, override_dataset=ds).run()
        print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss": rss("VmHWM") - base}))
    else:
        base = rss()
        t = time.perf_counter()
        store = ActivationsStore(
            model=model, dataset=None, streaming=False, hook_name=hook, hook_head_index=None, context_size=n_ctx,
            d_in=tl["d_model"], n_batches_in_buffer=int(sys.argv[5]) // n_ctx, total_training_tokens=tokens,
            store_batch_size_prompts=32, train_batch_size_tokens=4096, prepend_bos=False,
            normalize_activations="none", device="cpu", dtype="float32", cached_activations_path=out_dir,
        )
        n = 0
        while n < tokens:
            n += store.next_batch().shape[0]
        print(json.dumps({"seconds": time.perf_counter() - t, "rows": n, "peak_rss": rss("VmHWM") - base}))
    """
)


def run_child(args: list[str]) -> dict:
    env = {**os.environ, "SAEKIT_NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load1": os.getloadavg()[0]}


def run_saelens(py: Path, phase: str, work: Path, tokens: int, buffer_tokens: int) -> dict:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [str(py), "-c", SAELENS_CHILD, phase, str(work), str(tokens), HOOK, str(buffer_tokens)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load1": os.getloadavg()[0]}


def ensure_saelens(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import sae_lens"], capture_output=True).returncode == 0:
        return py
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)  # first: no CUDA wheel swap
    subprocess.run([py, "-m", "pip", "install", "-q", "sae-lens"], check=True)
    return py


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--tokens", type=int, default=256 * 4096, help="a multiple of 4096 (32 sequences of 128); default 1 GiB of rows"
    )
    p.add_argument("--buffer-tokens", type=int, default=1 << 18, help="reader buffer (rows); default: ActivationCache's")
    p.add_argument("--work", default="/tmp/saekit-bench-cache")
    p.add_argument("--saelens-venv", default="/tmp/saekit-interop/saelens")
    p.add_argument("--skip-saelens", action="store_true")
    p.add_argument("--skip-stream", action="store_true", help="leave out the live-stream phase (cache reads only)")
    p.add_argument(
        "--cold-passes", type=int, default=3, help="cold raw and shuffled reads, alternated; the median is reported"
    )
    p.add_argument(
        "--warm-passes",
        type=int,
        default=1,
        help="warm phases: raw read and shuffled read (epochs) repeated this many times, time per pass "
        "(longer, steadier timings on a small cache)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep the model, tokens, both caches and their write figures from the last run in --work; "
        "re-measure every read and the stream",
    )
    p.add_argument("--child", nargs="+")
    args = p.parse_args()
    work = Path(args.work)
    if args.child:
        phase, rest = args.child[0], args.child[1:]
        fn = {"prepare": child_prepare, "write": child_write, "stream": child_stream}.get(phase)
        if phase == "read":
            out = child_read(Path(rest[0]), int(rest[1]), rest[2] == "1", int(rest[3]) if len(rest) > 3 else 1)
        else:
            out = fn(Path(rest[0]), int(rest[1]))
        print(json.dumps(out))
        return

    work.mkdir(parents=True, exist_ok=True)
    n = args.tokens
    if n % 4096:
        raise SystemExit("--tokens must be a multiple of 4096 so SAELens caches exactly as many tokens")
    res: dict = {
        "tokens": n,
        "hook": HOOK,
        "d": 256,
        "buffer_tokens": args.buffer_tokens,
        "warm_passes": args.warm_passes,
        "cold_passes": args.cold_passes,
    }
    old = json.loads((work / "results.json").read_text()) if args.reuse else {}
    if old and old["tokens"] != n:
        raise SystemExit(f"--reuse: the last run cached {old['tokens']} tokens, not {n}")
    if old:
        res["reused_from"] = old["date"]
        for key in ("prepare", "write") + (() if args.skip_saelens else ("saelens_write", "saelens_version")):
            if key in old:
                res[key] = old[key]
    else:
        res["prepare"] = run_child(["prepare", str(work), str(n)])
        res["write"] = run_child(["write", str(work), str(n)])
    files = sorted((work / "saekit_cache" / "shards").glob("*.safetensors"))
    act_bytes = n * 256 * 4
    # cold passes alternate raw and shuffled reads, so a slow spell of the shared disk hits both
    raw_runs, read_runs = [], []
    for _ in range(args.cold_passes):
        drop_page_cache(files)
        sec, nbytes = raw_read(files)
        raw_runs.append({"seconds": sec, "bytes": nbytes, "load1": os.getloadavg()[0]})
        drop_page_cache(files)
        read_runs.append(run_child(["read", str(work), str(args.buffer_tokens), "0"]))
    res["raw_cold"] = {**median_run(raw_runs), "runs": [x["seconds"] for x in raw_runs]}
    res["read_cold"] = {**median_run(read_runs), "runs": [x["seconds"] for x in read_runs]}
    passes = str(args.warm_passes)
    sec, nbytes = raw_read(files, args.warm_passes)  # now in the page cache
    res["raw_warm"] = {"seconds": sec, "bytes": nbytes, "load1": os.getloadavg()[0]}
    res["read_warm"] = run_child(["read", str(work), str(args.buffer_tokens), "0", passes])
    res["read_warm_verify"] = run_child(["read", str(work), str(args.buffer_tokens), "1"])
    if not args.skip_stream:
        res["stream"] = run_child(["stream", str(work), str(n)])
    if not args.skip_saelens:
        py = ensure_saelens(Path(args.saelens_venv))
        res["saelens_version"] = subprocess.run(
            [py, "-c", "import importlib.metadata as m; print(m.version('sae-lens'))"], capture_output=True, text=True
        ).stdout.strip()
        if "saelens_write" not in res:
            res["saelens_write"] = run_saelens(py, "write", work, n, args.buffer_tokens)
        sl_files = sorted((work / "saelens_cache").glob("*.arrow"))
        if sl_files:
            drop_page_cache(sl_files)
            res["saelens_read_cold"] = run_saelens(py, "read", work, n, args.buffer_tokens)
            res["saelens_read_warm"] = run_saelens(py, "read", work, n, args.buffer_tokens)
    res["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (work / "results.json").write_text(json.dumps(res, indent=2))
    print(report(res, act_bytes))


def report(r: dict, act_bytes: int) -> str:
    n = r["tokens"]
    mib = 2**20

    def rate(sec: float) -> str:
        return f"{n / sec / 1e3:,.1f} k tok/s, {act_bytes / sec / 1e9:.3f} GB/s"

    def row(label: str, x: dict, throughput: str, note: str = "", seconds: bool = True) -> str:
        sec = f"{x['seconds']:.2f}" if seconds and "seconds" in x else "-"
        peak = f"{x['peak_rss'] / mib:.0f}" if "peak_rss" in x else "-"
        load = f"{x['load1']:.1f}" if "load1" in x else "-"
        return f"| {label} | {sec} | {throughput} | {peak} | {load} | {note} |"

    lines = [
        f"tokens {n:,}, hook {r['hook']} (d=256, float32, {act_bytes / 1e9:.3f} GB), "
        f"buffer {r['buffer_tokens']:,} tokens; {r['machine']}; {r['date']}"
        + (f"; cold figures: median of {r['cold_passes']} alternated passes" if r.get("cold_passes", 1) > 1 else "")
        + (f"; warm figures per pass, mean of {r['warm_passes']} passes" if r.get("warm_passes", 1) > 1 else ""),
        *(
            [f"(write figures and caches from the run of {r['reused_from']}; everything else re-measured)"]
            if "reused_from" in r
            else []
        ),
        "",
        "| phase | time (s) | throughput | peak RSS (MiB) | load avg | note |",
        "|---|---|---|---|---|---|",
        row(
            "saekit write (`build_cache`)", r["write"], rate(r["write"]["seconds"]), "model forward + shards + SHA-256"
        ),
    ]
    for temp in ("cold", "warm"):
        raw, rd = r[f"raw_{temp}"], r[f"read_{temp}"]
        raw_gbs = raw["bytes"] / raw["seconds"] / 1e9
        rd_gbs = raw["bytes"] / rd["seconds"] / 1e9  # the same files' bytes through the shuffled reader
        spread = ""
        if len(raw.get("runs", [])) > 1:  # the fraction of each alternated pair, lowest to highest
            pairs = sorted(a / b for a, b in zip(raw["runs"], rd["runs"], strict=True))
            spread = f" (passes {', '.join(f'{x:.0%}' for x in pairs)})"
        lines.append(row(f"raw sequential read, {temp}", raw, f"{raw_gbs:.3f} GB/s (files)", "plain 8 MiB reads"))
        lines.append(
            row(
                f"saekit shuffled read, {temp}",
                rd,
                rate(rd["seconds"]),
                f"**{rd_gbs / raw_gbs:.0%} of raw**{spread}; trainer waited {rd['wait_fraction']:.0%}",
            )
        )
    v = r["read_warm_verify"]
    lines.append(
        row("saekit shuffled read + SHA-256 verify, warm", v, rate(v["seconds"]), f"open {v['open_seconds']:.2f} s")
    )
    s = r.get("stream")
    lines.append(
        "| saekit live stream | - | - | - | - | not run (--skip-stream) |"
        if s is None
        else row(
            "saekit live stream + top-k SAE training",
            s,
            f"{s['train_tokens_per_s'] / 1e3:,.1f} k tok/s trained",
            f"forward alone {s['forward_tokens_per_s'] / 1e3:,.1f} k tok/s, training alone "
            f"{s['train_only_tokens_per_s'] / 1e3:,.1f} k tok/s; trainer waited {s['wait_fraction']:.0%}",
            seconds=False,
        )
    )
    version = r.get("saelens_version", "")
    for key, label in (
        ("saelens_write", "CacheActivationsRunner write"),
        ("saelens_read_cold", "ActivationsStore read, cold"),
        ("saelens_read_warm", "ActivationsStore read, warm"),
    ):
        if "saelens_write" not in r:
            break
        x = r.get(key, {"error": "not run"})
        if "error" in x:
            lines.append(f"| SAELens {version} {label} | - | - | - | - | failed: {x['error']} |")
        else:
            lines.append(row(f"SAELens {version} {label}", x, rate(x["seconds"])))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
