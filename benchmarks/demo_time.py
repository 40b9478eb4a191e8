"""Where the demo's model-training time goes: two model seeds trained one after the other with two torch
threads (what `saekit demo` did), the same with glibc keeping freed memory (saekit.allocator), and the two
seeds at once in two processes of one thread each (what it does now). Modes are interleaved, `--repeats`
times, so a loaded machine slows them alike; each row gives the wall time, the user and system CPU seconds
of the processes and their minor page faults.

    PYTHONPATH=. nice -n 10 python benchmarks/demo_time.py --steps 60 --repeats 2

Numbers in benchmarks/RESULTS.md ("The demo's time") come from it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {  # name -> (processes at once, torch threads each, keep freed memory)
    "sequential, 2 threads": (1, 2, False),
    "sequential, 2 threads, keep memory": (1, 2, True),
    "2 processes × 1 thread, keep memory": (2, 1, True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60, help="model training steps (the demo: 300)")
    p.add_argument("--variant", default="baseline")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--worker", nargs=4, metavar=("SEEDS", "THREADS", "KEEP", "OUT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(seeds: str, threads: str, keep: str, out: str, steps: int, variant: str) -> None:
    """Train the demo's model for each seed in SEEDS (comma-separated), one after the other."""
    import torch

    from saekit.allocator import keep_freed_memory
    from saekit.models import train_model
    from saekit.models.train import corpus_tokens
    from saekit.pipeline.demo import DEMO_MODEL

    torch.set_num_threads(int(threads))
    if keep == "1":
        keep_freed_memory()
    cfg = DEMO_MODEL.replace(steps=steps, variant=variant, eval_tokens=4096)  # time the steps, not the evaluation
    tok, train, val = corpus_tokens(cfg)
    wait_for = Path(out) / "go"  # every worker has its tokens: train at the same moment
    Path(out, f"ready{seeds}").touch()
    while not wait_for.exists():
        time.sleep(0.05)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for seed in map(int, seeds.split(",")):
        train_model(cfg.replace(seed=seed), Path(out) / f"{variant}{seed}", tokenizer=tok, data=(train, val), progress=False)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    print(json.dumps({"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                      "minflt": r1.ru_minflt - r0.ru_minflt}))  # fmt: skip


def run_mode(procs: int, threads: int, keep: bool, args: argparse.Namespace) -> dict:
    """Training time of the mode (tokenising and imports left out): wall, summed CPU and page faults."""
    seed_lists = ["0,1"] if procs == 1 else ["0", "1"]
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--variant", args.variant, "--worker"]
        running = [subprocess.Popen([*cmd, s, str(threads), "1" if keep else "0", out], stdout=subprocess.PIPE, text=True)
                   for s in seed_lists]  # fmt: skip
        while len(list(Path(out).glob("ready*"))) < len(seed_lists):
            time.sleep(0.1)
        Path(out, "go").touch()
        done = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in running]
        if any(p.returncode for p in running):
            raise SystemExit("a worker failed")
    total = {k: sum(d[k] for d in done) for k in ("user", "sys", "minflt")}
    return {"wall": max(d["wall"] for d in done), **total}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(*args.worker, steps=args.steps, variant=args.variant)
    print(f"two seeds of the demo's {args.variant} model, {args.steps} steps each; load {Path('/proc/loadavg').read_text().split()[0]}")
    print("| repeat | mode | wall s | user s | sys s | minor faults |\n|---|---|---|---|---|---|")
    for rep in range(args.repeats):
        for name, (procs, threads, keep) in MODES.items():
            r = run_mode(procs, threads, keep, args)
            print(f"| {rep} | {name} | {r['wall']:.0f} | {r['user']:.0f} | {r['sys']:.1f} | {r['minflt']:,} |", flush=True)


if __name__ == "__main__":
    main()
