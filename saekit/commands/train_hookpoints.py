"""`saekit train --model DIR --hookpoints H1 H2 ...`: one dictionary (or sweep) per hookpoint,
every hookpoint read from the same model forward (part of the `train` verb, not a verb).

In one process every job trains here. Under torchrun, rank 0 runs the model and sends each
job's rows to its owner (job i on rank ``i % world``); see saekit.training.dist_hookpoints.
Each job writes ``OUT/<hookpoint>/`` (``IN__OUT`` for a transcoder pair); rank 0 also writes
``OUT/source.json`` (the run's spec, for ``--resume``) and the producer's read position.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from saekit.config import TrainConfig
from saekit.errors import ConfigError


def parse_hookpoints(items: list[str]) -> list[str | tuple[str, str]]:
    """'h' -> 'h'; 'in,out' -> ('in', 'out') (a transcoder pair)."""
    out: list[str | tuple[str, str]] = []
    for item in items:
        parts = [p.strip() for p in str(item).split(",")]
        if len(parts) > 2 or not all(parts):
            raise ConfigError(f"--hookpoints entries are H or IN,OUT (a transcoder pair), got {item!r}.")
        out.append(parts[0] if len(parts) == 1 else (parts[0], parts[1]))
    if len(set(out)) != len(out):
        raise ConfigError(f"--hookpoints lists a hookpoint twice: {items}.")
    return out


def _check_source(source: dict[str, Any]) -> None:
    if source.get("hookpoint") or source.get("hookpoint_out"):
        raise ConfigError("give --hookpoint (one dictionary) or --hookpoints (one per hookpoint), not both.")
    if not source.get("model") or source.get("cache") or source.get("activations"):
        raise ConfigError(
            "--hookpoints reads every hookpoint from one model forward: give --model DIR, not --cache or --activations."
        )


def run_hookpoints(args: argparse.Namespace, spec: dict[str, Any], tcfg: TrainConfig, out: Path) -> int:
    from saekit.commands.train import dictionary_configs, live_tokens
    from saekit.models import load_model
    from saekit.training import dist_comm as comm
    from saekit.training.dist_hookpoints import PRODUCER_STATE, HookpointJob, LiveHookSource, train_hookpoints
    from saekit.training.runspec import save_spec

    source = spec["source"]
    _check_source(source)
    hookpoints = parse_hookpoints(source["hookpoints"])
    if not args.resume and (out / PRODUCER_STATE).exists():
        raise ConfigError(f"{out} already holds a training run; use --resume to continue it or another --out.")
    if comm.is_distributed_launch():
        comm.init_distributed(timeout_s=getattr(args, "dist_timeout", None), device=tcfg.device)
    rank, _ = comm.rank_and_world()

    producer, widths, variant = None, None, ""
    if rank == 0:  # only rank 0 runs the model
        handle = load_model(source["model"], device=tcfg.device)
        tokens, _ = live_tokens(source, handle, tcfg.total_tokens)
        keys = [k for hp in hookpoints for k in ((hp,) if isinstance(hp, str) else hp)]
        producer = LiveHookSource(handle, tokens, keys, seed=tcfg.seed)
        widths, variant = producer.widths, str(getattr(handle, "variant", "") or "")
    # the owners need the widths to build their dictionaries (identity in one process)
    widths, variant = comm.broadcast_object((widths, variant), 0, "the hookpoint widths broadcast")

    jobs = []
    for hp in hookpoints:
        keys = (hp,) if isinstance(hp, str) else hp
        cfgs = dictionary_configs(spec["dictionaries"], widths[keys[0]], widths[keys[-1]], len(keys) == 2, keys[0])
        for cfg in cfgs:
            cfg.model_name = cfg.model_name or str(source["model"])
            cfg.variant = cfg.variant or variant
        jobs.append(HookpointJob(hp, cfgs))
    if rank == 0 and not args.resume:
        save_spec(out, spec)
    got = train_hookpoints(jobs, producer, tcfg, out_dir=out, resume=args.resume)
    if args.resume:
        print("resumed from the last checkpoint", file=sys.stderr)
    for job in jobs:
        if job.name in got:
            print(f"saved {out / job.name}")
    return 0
