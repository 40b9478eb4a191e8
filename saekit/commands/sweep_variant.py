"""`saekit sweep-variant`: one regulariser at several coefficients and model seeds, compared with the
baseline and the random control, each axis plotted against the LM cost (saekit.pipeline.sweep)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep-variant",
        help="dose-response of one regulariser: train models at several coefficients, compare, plot against LM cost",
        description="Train (or reuse) OUT/models/<name> for the baseline, the random control and VARIANT at every "
        "coefficient, for every model seed; compare them into OUT/compare (results.json, report.html) and plot "
        "each axis against the LM cost in OUT/compare/pareto.png.",
    )
    p.add_argument("--variant", required=True, help="a regularised variant with a coefficient (e.g. act_l1)")
    p.add_argument("--coefs", type=float, nargs="+", required=True, help="regulariser coefficients")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="model seeds (default 0 1)")
    p.add_argument("--out", required=True, help="output folder; models already in OUT/models are reused")
    p.add_argument("--model-steps", type=int, default=None, help="training steps per model (default: ModelConfig's)")
    p.add_argument("--dict-seeds", type=int, nargs="+", default=[0, 1, 2], help="dictionary seeds per model")
    p.add_argument("--train-tokens", type=int, default=100_000, help="training tokens per dictionary")
    p.add_argument("--eval-seqs", type=int, default=512, help="held-out sequences (abstractness needs ~30k tokens)")
    p.add_argument("--autointerp-latents", type=int, default=256, help="latents explained per dictionary")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.config import ModelConfig
    from saekit.pipeline.sweep import check_sweep, sweep_variant

    check_sweep(args.variant, args.coefs, args.seeds)  # before any training
    mcfg = ModelConfig(device=args.device)
    if args.model_steps is not None:
        mcfg = mcfg.replace(steps=args.model_steps)
    results = sweep_variant(
        args.variant, args.coefs, args.seeds, args.out, model_cfg=mcfg, progress=True, dict_seeds=args.dict_seeds,
        train_tokens=args.train_tokens, n_eval_seqs=args.eval_seqs, autointerp_latents=args.autointerp_latents,
        synthetic=False, device=args.device,
    )  # fmt: skip
    print(f"swept {args.variant} at {len(args.coefs)} coefficients × {len(args.seeds)} model seeds; "
          f"report: {args.out}/compare/report.html, Pareto plot: {results['sweep']['pareto_png']}")  # fmt: skip
    return 0
