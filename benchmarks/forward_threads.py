"""Forward passes of a saekit model with one or two torch threads, with and without saekit.allocator's
keep_freed_memory(): tokens/s, CPU seconds and page faults of 16 batches of 32 × 64 tokens.

    PYTHONPATH=. nice -n 10 python benchmarks/forward_threads.py KEEP(0|1) THREADS MODEL_FOLDER

Numbers in benchmarks/RESULTS.md ("The demo's time") come from it.
"""

import resource
import sys
import time

import torch

from saekit.allocator import keep_freed_memory
from saekit.models import load_model


def main() -> None:
    keep, threads, folder = sys.argv[1] == "1", int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(threads)
    if keep:
        keep_freed_memory()
    h = load_model(folder, device="cpu")
    x = torch.randint(0, 4096, (32, 64), generator=torch.Generator().manual_seed(0))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with torch.no_grad():
        for _ in range(16):
            h.model.run_with_cache(x, names_filter="blocks.1.hook_mlp_out")
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    print(f"keep {keep} threads {threads}: {16 * 2048 / (t1 - t0):.0f} tok/s wall, cpu {cpu:.1f} s, "
          f"faults {r1.ru_minflt - r0.ru_minflt}")  # fmt: skip


if __name__ == "__main__":
    main()
