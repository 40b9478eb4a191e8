"""Run a training spec (``saekit.training.spec``) in this process, however it was started:
alone (the ``Solo`` strategy), or as one rank of torchrun (data parallel, latent sharding, or
distributed hookpoints). This is what ``saekit train`` calls.

    saved = train_spec(spec, "runs/sae")                 # a new run into runs/sae
    saved = train_spec(resume_spec("runs/sae"), "runs/sae", resume=True)

A spec whose source lists ``hookpoints`` trains one dictionary (or sweep) per hookpoint from
one model forward; under torchrun rank 0 runs the model and job i trains on rank ``i % world``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from saekit.config import TrainConfig
from saekit.errors import ConfigError, DataError
from saekit.parallel import comm
from saekit.parallel.data_parallel import data_part, make_trainer
from saekit.parallel.hookpoints import PRODUCER_STATE, HookpointJob, LiveHookSource, train_hookpoints
from saekit.runfolder import is_writer
from saekit.training.checkpoint import CHECKPOINT_NAME
from saekit.training.runspec import check_run, load_spec, save_spec
from saekit.training.spec import dictionary_configs

SHARD_CHECKPOINTS = "checkpoint.rank*-of-*.pt"


def resume_spec(out: str | Path) -> dict[str, Any]:
    """The spec recorded in run folder ``out``, after checking it holds a checkpoint to resume."""
    out = Path(out)
    many = (out / PRODUCER_STATE).is_file()  # a --hookpoints run
    if not many and not (out / CHECKPOINT_NAME).is_file() and not any(out.glob(SHARD_CHECKPOINTS)):
        raise DataError(f"{out / CHECKPOINT_NAME} does not exist; nothing to resume.")
    return load_spec(out)  # paths resolved against OUT, and OUT is the run


def train_spec(
    spec: dict[str, Any],
    out: str | Path,
    *,
    resume: bool = False,
    timeout_s: float | None = None,
    dist_data: str = "global",
    shard_latents: bool = False,
) -> list[Path]:
    """Train what ``spec`` describes into ``out``; returns the dictionary folders this process
    wrote. ``resume`` continues from the checkpoint(s) in ``out``."""
    out = Path(out)
    if not resume:
        spec = {**spec, "train": {**spec["train"], "out_dir": str(out)}}
    tcfg = TrainConfig.from_dict(spec["train"])
    if spec["source"].get("hookpoints"):
        return _train_hookpoints(spec, tcfg, out, resume, timeout_s)
    from saekit.activations.sources import build_source, source_origin, source_widths

    source = build_source(spec["source"], tcfg.seed, tcfg.device, part=data_part(dist_data), total_tokens=tcfg.total_tokens)
    cfgs = dictionary_configs(spec["dictionaries"], *source_widths(source), source_origin(spec["source"], source))
    for note in check_run(tcfg, source, spec["train"], resume) if is_writer() else []:
        print(f"saekit train: warning: {note}", file=sys.stderr)
    if not resume and is_writer():  # only the writing rank owns the folder (no race between ranks)
        out.mkdir(parents=True, exist_ok=True)
        if (out / CHECKPOINT_NAME).exists() or any(out.glob(SHARD_CHECKPOINTS)):
            raise ConfigError(f"{out} already holds a training run; use --resume to continue it or another --out.")
        save_spec(out, spec)  # paths stored relative to the run folder too
    trainer = make_trainer(
        cfgs, source, tcfg, timeout_s=timeout_s, data=dist_data, shard_latents=shard_latents
    )
    try:
        if resume:
            trainer.resume()
            print(f"resuming at step {trainer.step_count} of {trainer.total_steps}", file=sys.stderr)
        trainer.fit()
    finally:
        if hasattr(source, "close"):  # stop a cache's or stream's prefetch thread
            source.close()
    return [trainer.dictionary_dir(i) for i in range(len(cfgs))] if trainer.strategy.writes else []


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


def _check_hookpoint_source(source: dict[str, Any]) -> None:
    if source.get("hookpoint") or source.get("hookpoint_out"):
        raise ConfigError("give --hookpoint (one dictionary) or --hookpoints (one per hookpoint), not both.")
    if not source.get("model") or source.get("cache") or source.get("activations"):
        raise ConfigError(
            "--hookpoints reads every hookpoint from one model forward: give --model DIR, not --cache or --activations."
        )


def _train_hookpoints(spec: dict[str, Any], tcfg: TrainConfig, out: Path, resume: bool, timeout_s: float | None) -> list[Path]:
    """One job per hookpoint; each writes ``out/<hookpoint>/`` (``IN__OUT`` for a pair)."""
    source = spec["source"]
    _check_hookpoint_source(source)
    hookpoints = parse_hookpoints(source["hookpoints"])
    if not resume and (out / PRODUCER_STATE).exists():
        raise ConfigError(f"{out} already holds a training run; use --resume to continue it or another --out.")
    if comm.is_distributed_launch():
        comm.init_distributed(timeout_s=timeout_s, device=tcfg.device)
    rank, _ = comm.rank_and_world()
    producer, widths, variant = None, None, ""
    if rank == 0:  # only rank 0 runs the model
        from saekit.activations.sources import live_tokens
        from saekit.models import load_model

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
        origin = {"hook_name": keys[0], "hook_name_out": keys[1] if len(keys) == 2 else "",
                  "model_name": str(source["model"]), "variant": variant}
        cfgs = dictionary_configs(spec["dictionaries"], widths[keys[0]], widths[keys[-1]], len(keys) == 2, origin)
        jobs.append(HookpointJob(hp, cfgs))
    if rank == 0 and not resume:
        out.mkdir(parents=True, exist_ok=True)
        save_spec(out, spec)  # paths stored relative to the run folder too
    got = train_hookpoints(jobs, producer, tcfg, out_dir=out, resume=resume)
    if resume:
        print("resumed from the last checkpoint", file=sys.stderr)
    return [out / job.name for job in jobs if job.name in got]
