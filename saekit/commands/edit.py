"""`saekit edit localize|ablate|steer --model DIR --concept SPEC`: find, remove or steer a concept."""

from __future__ import annotations

import argparse


def _floats(text: str) -> list[float]:
    from saekit.errors import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--alphas must be comma-separated numbers, e.g. 0,0.5,1; got {text!r}.") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit",
        help="localise a concept in neurons or latents, ablate it, steer with it",
        description="Rank units by how well they separate concept from control text (localize), ablate the top n "
        "(ablate) or add a direction (steer); writes OUT/edit_<action>.json and .png. See docs/editing.md.",
    )
    p.add_argument("action", choices=["localize", "ablate", "steer"], help="localize: rank units; ablate: remove the top units; steer: add a direction")
    p.add_argument("--model", required=True, help="model folder or name")
    p.add_argument("--concept", required=True, help="character:NAME, words:REGEX, or a text file/folder/dataset")
    p.add_argument("--control", default=None, help="control text source (default for character:/words: the rest)")
    p.add_argument("--dictionary", default=None, help="dictionary folder: edit its latents (default: neurons at --hook)")
    p.add_argument("--hook", default=None, help="hookpoint (default: the dictionary's; e.g. blocks.0.mlp.hook_post)")
    p.add_argument("--split", default="validation", help="built-in corpus split for character:/words: (default validation)")
    p.add_argument("--n-ctx", type=int, default=64, help="context length (default 64)")
    p.add_argument("--max-texts", type=int, default=200, help="texts per side at most (default 200)")
    p.add_argument("--top", type=int, default=10, help="top units listed (default 10)")
    p.add_argument("--n-max", type=int, default=32, help="ablate: up to this many units (default 32)")
    p.add_argument("--mode", choices=["zero", "mean"], default="zero", help="ablate: zero or mean ablation")
    p.add_argument(
        "--probe", action="store_true", help="ablate: also the concept effect on a linear probe's held-out accuracy"
    )
    p.add_argument("--alphas", type=_floats, default=None, help="steer: comma-separated α (default 0,…,2)")
    p.add_argument("--direction", default="top", help="steer: top (the top unit), a unit index, or mean_difference")
    p.add_argument("--out", default=".", help="output folder (default .)")
    p.add_argument("--overwrite", action="store_true", help="replace existing edit_<action> files")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.editing.run import run_edit

    r = run_edit(
        args.action, args.model, args.concept, args.out, control=args.control, dictionary=args.dictionary,
        hook=args.hook, n_ctx=args.n_ctx, max_texts=args.max_texts, split=args.split, top=args.top,
        n_max=args.n_max, mode=args.mode, alphas=args.alphas, direction=args.direction,
        overwrite=args.overwrite, device=args.device, probe=args.probe,
    )
    if args.action == "localize":
        best = r["top"][0]
        line = f"top {r['kind']} {best['unit']}: AUROC {best['auroc']:.3f}, t {best['t']:.1f}"
    elif args.action == "ablate":
        line = f"ablating {r['n'][-1]} {r['kind']}s removes {r['prob_removed'][-1]:.0%} of the concept probability; " \
               f"control loss {r['collateral'][-1]:+.3f} nats"
    else:
        line = f"α {r['alpha'][-1]:g}: log P(target) {r['target_logprob'][0]:.2f} -> {r['target_logprob'][-1]:.2f}, " \
               f"control loss {r['control_loss'][0]:.3f} -> {r['control_loss'][-1]:.3f}"
    print(f"{r['concept']}: {line}; wrote {r['json']}, {r['png']} and {r['page']}")
    return 0
