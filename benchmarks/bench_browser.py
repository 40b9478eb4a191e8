"""Feature browser build time and peak memory: a 16k-latent top-k dictionary on 200k tokens.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_browser.py [--latents 16384] [--tokens 200000] [--threads 2]

Builds a tiny transformer-lens model folder (2 layers, d_model 256, 512-token BPE tokenizer, random
weights) and a random top-k dictionary (k 32) on blocks.1.hook_resid_post in a temporary folder,
then runs ``build_browser`` over the built-in corpus and prints wall time, process CPU time, the
peak resident set size (ru_maxrss) before and after the build, and the site's size on disk.
Figures go to benchmarks/RESULTS.md (section "Feature browser (issue 17)").
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--latents", type=int, default=16384)
    p.add_argument("--tokens", type=int, default=200_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", default=None, help="copy the site here (to open it in a browser)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import save_tiny_model_folder

    from saekit.config import DictionaryConfig
    from saekit.dictionaries import create
    from saekit.io import save_dictionary
    from saekit.report.feature_browser import build_browser

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_tiny_model_folder(tmp / "model", d_model=256, d_head=64, d_mlp=1024, n_ctx=128)
        cfg = DictionaryConfig(kind="topk", d_in=256, n_latents=a.latents, k=32, hook_name="blocks.1.hook_resid_post")
        save_dictionary(create(cfg, seed=0), tmp / "dict")
        before = peak_rss_mb()
        w, c = time.perf_counter(), time.process_time()
        out = build_browser(str(tmp / "dict"), str(tmp / "model"), tmp / "site", tokens=a.tokens, batch_rows=16)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        n_files = sum(1 for f in out.rglob("*") if f.is_file())
        if a.keep:
            import shutil

            shutil.copytree(out, a.keep)
    print(
        f"browser: {a.latents} latents, {a.tokens} tokens, {a.threads} threads: wall {wall:.0f} s, cpu {cpu:.0f} s, "
        f"peak RSS {peak_rss_mb():.0f} MB (before the build {before:.0f} MB), site {size:.0f} MB in {n_files} files"
    )


if __name__ == "__main__":
    main()
