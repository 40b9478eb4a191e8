"""`saekit train`: train one dictionary, or a sweep from a TOML file, on one activation source
(or one per hookpoint with ``--hookpoints``). Parses flags and TOML into a training spec
(``saekit.training.spec``) and calls ``saekit.parallel.launch.train_spec``.

Sources: ``--cache DIR`` (from ``saekit cache``), ``--model DIR --hookpoint H`` (a live stream
over the built-in corpus), or ``--activations FILE.safetensors`` (tensors ``x`` and optional
``y``). ``--resume --out DIR`` continues an interrupted run from ``DIR/checkpoint.pt`` with the
configs and source recorded in ``DIR`` (other flags are then not needed).
"""

from __future__ import annotations

import argparse
from typing import Any

from saekit.counts import parse_count


def add_parser(sub: argparse._SubParsersAction) -> None:
    from saekit.config import DICTIONARY_KINDS, TOPK_KINDS, TrainConfig

    base = TrainConfig()  # the defaults shown in --help are the config's
    p = sub.add_parser(
        "train",
        help="train a sparse dictionary (or a sweep) on cached or live activations",
        description="Train SAEs / transcoders. Example: saekit train --cache runs/cache --kind topk "
        "--k 32 --n-latents 16384 --tokens 50M --out runs/sae",
    )
    src = p.add_argument_group("activation source (one of)")
    src.add_argument("--cache", help="activation cache folder written by `saekit cache`")
    src.add_argument("--model", help="saekit model folder / transformer-lens name to stream activations from")
    src.add_argument("--activations", help="safetensors file with tensor x [N, d_in] (and y [N, d_out])")
    src.add_argument("--hookpoint", help="hookpoint to read (input side for transcoders)")
    src.add_argument("--hookpoint-out", help="output hookpoint: makes a transcoder (e.g. blocks.0.hook_mlp_out)")
    src.add_argument(
        "--hookpoints",
        nargs="+",
        metavar="H",
        help="with --model: one dictionary (or sweep) per hookpoint, all read from one model forward; "
        "IN,OUT makes a transcoder pair; under torchrun job i trains on rank i %% world",
    )
    src.add_argument("--n-ctx", type=int, default=None, help="context length for --model (default: model's)")
    src.add_argument("--dataset", help="with --model: HF dataset name or local text/jsonl/parquet path (default: built-in corpus)")
    src.add_argument("--split", help="with --model: dataset split (default train)")
    src.add_argument("--text-column", help="with --model: dataset column holding the text (default text)")
    d = p.add_argument_group("dictionary")
    d.add_argument("--kind", default=None, help=f"{' | '.join(DICTIONARY_KINDS)} (default topk)")
    d.add_argument("--n-latents", type=int, default=None, help="dictionary width")
    d.add_argument("--k", type=int, default=None, help=f"active latents per token ({', '.join(TOPK_KINDS)})")
    d.add_argument("--skip", action="store_true", help="skip transcoder (adds W_skip)")
    d.add_argument("--sparsity-coef", type=float, default=None, help="λ of relu penalties / jumprelu L0")
    d.add_argument("--penalty", default=None, help="relu penalty: l1 | l1_decnorm | tanh | log | lp")
    d.add_argument("--no-tied-init", action="store_true", help="random encoder instead of decoder transpose")
    d.add_argument("--w-dec-lr-scale", type=float, default=None,
                   help="W_dec's rate as a multiple of the run's (default 3 for topk, batchtopk, matryoshka, "
                        "up to 20 when both n-latents > 16·d and k > d/8, and in runs of 2048+ steps on spread-out "
                        "data up to 120 with the base rate at 0.75x unless --lr is given; else 1; docs/training.md)")
    d.add_argument("--b-dec-lr-scale", type=float, default=None,
                   help="b_dec's rate as a multiple of the run's (default 0.3 for topk, batchtopk, matryoshka; else 1)")
    d.add_argument("--b-enc-lr-scale", type=float, default=None,
                   help="b_enc's rate as a multiple of the run's (default 1)")
    t = p.add_argument_group("training")
    t.add_argument("--tokens", default=None, help=f"training tokens, e.g. 50M (default {base.total_tokens:,})")
    t.add_argument("--batch-size", type=int, default=None, help=f"activation rows per step (default {base.batch_size})")
    t.add_argument(
        "--lr", type=float, default=None,
        help="learning rate (default 2e-4 * sqrt(16384 / n_latents) * max(1, 2048 / steps), at most 1e-2; "
        "see docs/training.md)",
    )
    t.add_argument("--seed", type=int, default=None, help=f"seed of every random choice (default {base.seed})")
    t.add_argument(
        "--tail-average", type=float, default=None,
        help="save the mean of the weights over this last fraction of the steps (default: 0.2 times the long-run "
        "rule's weight, so 0.2 for a crowded topk in a run of 2048+ steps on spread-out data and 0 for short "
        "runs, LM residual streams, penalty kinds and crosscoders; 0 = the last step's weights; docs/training.md)",
    )
    t.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="scale activations so E||x||² = d_in (the default for every kind but crosscoders; --no-normalize: raw activations)")
    t.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    t.add_argument("--bf16", action="store_true", help="bf16 autocast")
    t.add_argument("--device", default=None, help=f"cpu, cuda or auto (default {base.device})")
    p.add_argument("--config", help="TOML file: [source], [train], [[dictionary]] and optional [sweep]")
    p.add_argument("--out", required=True, help="output folder (dictionaries, checkpoint, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace saekit's earlier output in --out (files saekit did not write are never deleted)",
    )
    p.add_argument(
        "--dist-timeout", type=float, default=None,
        help="under torchrun: seconds a rank waits for the others before failing (default 600)",
    )
    p.add_argument(
        "--dist-data", choices=("global", "local"), default="global",
        help="under torchrun: 'global' = every rank reads each global batch and keeps its slice "
        "(equals one process); 'local' = each rank reads only its own rows/sequences",
    )
    p.add_argument(
        "--shard-latents", action="store_true",
        help="under torchrun: split each TopK dictionary's latents across the ranks (too wide for one GPU)",
    )
    p.set_defaults(func=run)


# ---------------------------------------------------------------------- parsing
def _spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """{'source': {...}, 'train': {...}, 'dictionaries': [{...}]} from the TOML file and flags."""
    from saekit.training.spec import expand_sweep, read_config

    conf = read_config(args.config) if args.config else {}
    source = dict(conf.get("source", {}))
    for key in ("cache", "model", "activations", "hookpoint", "hookpoint_out", "hookpoints", "n_ctx", "dataset", "split", "text_column"):
        value = getattr(args, key)
        if value is not None:
            source[key] = value
    train = dict(conf.get("train", {}))
    flags = {
        "total_tokens": parse_count(args.tokens) if args.tokens is not None else None,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "tail_average": args.tail_average,
        "checkpoint_every": args.checkpoint_every,
        "device": args.device,
    }
    train.update({k: v for k, v in flags.items() if v is not None})
    if "total_tokens" in train:
        train["total_tokens"] = parse_count(train["total_tokens"])
    if args.normalize is not None:
        train["normalize"] = args.normalize
    if args.bf16:
        train["autocast_bf16"] = True
    dicts = conf.get("dictionary", [])
    dicts = [dicts] if isinstance(dicts, dict) else list(dicts)
    if not dicts:
        dicts = [{}]
    dflags = {
        "kind": args.kind,
        "n_latents": args.n_latents,
        "k": args.k,
        "sparsity_coef": args.sparsity_coef,
        "penalty": args.penalty,
        "W_dec_lr_scale": args.w_dec_lr_scale,
        "b_dec_lr_scale": args.b_dec_lr_scale,
        "b_enc_lr_scale": args.b_enc_lr_scale,
    }
    dflags = {k: v for k, v in dflags.items() if v is not None}
    if args.skip:
        dflags["skip"] = True
    if args.no_tied_init:
        dflags["init_encoder_from_decoder"] = False
    dicts = [{**d, **dflags} for d in dicts]
    dicts = expand_sweep(dicts, conf.get("sweep", {}))
    return {"source": source, "train": train, "dictionaries": dicts}


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from saekit import runfolder
    from saekit.parallel.launch import resume_spec, train_spec
    from saekit.training.runspec import finished_note

    out = Path(args.out)
    if runfolder.is_writer():
        runfolder.claim(out)  # one writer per run folder
    if args.resume:
        spec = resume_spec(out)
        if note := finished_note(out):  # every rank reads it, so every rank stops
            if runfolder.is_writer():
                print(note, file=sys.stderr)
            return 0
    else:
        spec = _spec_from_args(args)
        if runfolder.is_writer():
            runfolder.prepare_output(
                out, "train", args.overwrite, hint="use --resume to continue it, --overwrite", what="a training run"
            )
    saved = train_spec(
        spec,
        args.out,
        resume=args.resume,
        timeout_s=getattr(args, "dist_timeout", None),
        dist_data=getattr(args, "dist_data", "global"),
        shard_latents=getattr(args, "shard_latents", False),
    )
    for path in saved:
        print(f"saved {path}")
    return 0
