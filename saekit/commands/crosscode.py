"""`saekit crosscode`: one crosscoder over two (or more) models, with its sharing report.

Example: saekit crosscode runs/models/baseline runs/models/act_l1 --hookpoint blocks.0.hook_mlp_out
--kind batchtopk --k 32 --n-latents 4096 --tokens 2M --out runs/cc
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saekit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crosscode",
        help="train a crosscoder over several models and report shared / exclusive features",
        description="Train one crosscoder on the same tokens' activations from every model; write the "
        "crosscoder, results.json and report.html (relative decoder norms, classes, latent scaling).",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders (saekit, HF) or transformer-lens names")
    p.add_argument("--hookpoint", required=True, help="hookpoint read in every model, e.g. blocks.0.hook_mlp_out")
    p.add_argument("--names", nargs="+", default=None, help="source names (default: each model's variant)")
    p.add_argument("--kind", default="batchtopk", help="batchtopk (default) | topk | relu")
    p.add_argument("--k", type=int, default=32, help="active latents per token (topk, batchtopk)")
    p.add_argument("--n-latents", type=int, default=4096, help="dictionary width")
    p.add_argument("--sparsity-coef", type=float, default=None, help="λ of the relu crosscoder's decoder-norm L1")
    p.add_argument("--tokens", default="2M", help="training tokens, e.g. 2M")
    p.add_argument("--batch-size", type=int, default=4096, help="activation rows per step")
    p.add_argument(
        "--lr", type=float, default=None,
        help="learning rate (default 2e-4 * sqrt(16384 / n_latents) * max(1, 2048 / steps), at most 1e-2; "
        "see docs/training.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (one crosscoder)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None,
        help="train one crosscoder per seed (e.g. --seeds 0 1 2) and report counts per class as mean with a "
        "95%% interval over seeds; overrides --seed",
    )
    p.add_argument("--no-normalize", action="store_true", help="keep each model's activation scale")
    p.add_argument("--n-ctx", type=int, default=None, help="context length (default: the model's, at most 1024)")
    p.add_argument("--eval-tokens", default="20k", help="held-out tokens for the analysis")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.counts import parse_count
    from saekit.pipeline.crosscoder import crosscoder_folder, run_crosscoder

    out = Path(args.out)
    seeds = args.seeds if args.seeds is not None else [args.seed]
    folders = ["crosscoder", *(crosscoder_folder(s, seeds) for s in seeds)]
    if (out / "results.json").exists() or any((out / f / "checkpoint.pt").exists() for f in folders):
        raise ConfigError(f"{out} already holds a crosscoder run; choose another --out.")
    results = run_crosscoder(
        args.models, args.hookpoint, out, names=args.names, kind=args.kind, n_latents=args.n_latents,
        k=args.k, sparsity_coef=args.sparsity_coef, total_tokens=parse_count(args.tokens),
        batch_size=args.batch_size, lr=args.lr, seeds=seeds, normalize=not args.no_normalize,
        n_ctx=args.n_ctx, eval_tokens=parse_count(args.eval_tokens), device=args.device,
    )
    if len(seeds) == 1:
        counts = ", ".join(f"{k} {v}" for k, v in results["sharing"]["counts"].items())
        flagged = str(sum(results["latent_scaling"]["flagged"]))
    else:
        from saekit.report.crosscoder import interval

        counts = ", ".join(f"{k} {interval(v)}" for k, v in results["over_seeds"]["counts"].items())
        flagged = interval(results["over_seeds"]["n_flagged"])
    print(f"crosscoder: {counts}; {flagged} flagged; report {out / 'report.html'}")
    return 0
