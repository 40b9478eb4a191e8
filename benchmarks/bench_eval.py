"""Evaluation throughput on this machine: core metrics, n-gram auto-interp, Hungarian matching.

    .venv/bin/python benchmarks/bench_eval.py

Prints one line per measurement (wall and process-CPU seconds, and a rate); figures go to
benchmarks/RESULTS.md (section "Evaluation (issue 6)"). Ratios are against one plain encoder
forward over the same tokens, so they hold on a shared, noisy machine.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from saekit.config import DictionaryConfig
from saekit.data import default_tokenizer, load_corpus, pack_tokens
from saekit.dictionaries import create
from saekit.evaluation.autointerp import SparseActs, autointerp
from saekit.evaluation.matching import hungarian
from saekit.evaluation.metrics import dictionary_metrics


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    torch.manual_seed(0)
    d, n, k, n_tok = 128, 4096, 32, 65536
    sae = create(DictionaryConfig(kind="topk", d_in=d, n_latents=n, k=k), seed=0).eval()
    x = torch.randn(n_tok, d)

    def encode_only():
        with torch.no_grad():
            for s in range(0, n_tok, 4096):
                sae.encode(x[s : s + 4096])

    _, w0, c0 = timed(encode_only)
    print(f"encoder forward only      : {n_tok} tok  wall {w0:.2f}s  cpu {c0:.2f}s  {n_tok / w0:,.0f} tok/s")
    _, w1, c1 = timed(lambda: dictionary_metrics(sae, x))
    print(
        f"core metrics (d={d}, n={n}, k={k}): wall {w1:.2f}s cpu {c1:.2f}s  {n_tok / w1:,.0f} tok/s  "
        f"= {w1 / w0:.2f}x one encoder pass"
    )

    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[:4], tok, 128, max_rows=256)
    test = pack_tokens(load_corpus("validation")[:2], tok, 128, max_rows=128)
    rng = np.random.default_rng(0)
    n_lat = 512

    def planted(tokens):  # each latent fires on one random frequent token id: a realistic sparsity
        flat = tokens.reshape(-1).numpy()
        ids = rng.choice(np.unique(flat), size=n_lat)
        pos = [np.flatnonzero(flat == t) for t in ids]
        lat = np.concatenate([np.full(len(p), i) for i, p in enumerate(pos)])
        return SparseActs.from_triples(flat.size, n_lat, np.concatenate(pos), lat, np.ones(len(lat), np.float32))

    a_tr, a_te = planted(train), planted(test)
    out, w2, c2 = timed(lambda: autointerp(a_tr, train, a_te, test))
    print(
        f"n-gram auto-interp        : {n_lat} latents on {train.numel()}+{test.numel()} tok  wall {w2:.2f}s  "
        f"cpu {c2:.2f}s  {n_lat / w2:,.0f} latents/s"
    )
    for m in (1024, 4096):
        a, b = torch.randn(m, d), torch.randn(m, d)
        _, w3, c3 = timed(lambda a=a, b=b: hungarian(a, b))
        print(f"Hungarian matching {m}x{m}: wall {w3:.2f}s  cpu {c3:.2f}s")


if __name__ == "__main__":
    main()
