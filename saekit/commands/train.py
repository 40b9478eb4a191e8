"""`saekit train`: train one dictionary, or a sweep from a TOML file, on one activation source.

Sources: ``--cache DIR`` (from ``saekit cache``), ``--model DIR --hookpoint H`` (a live stream
over the built-in corpus), or ``--activations FILE.safetensors`` (tensors ``x`` and optional
``y``). ``--resume --out DIR`` continues an interrupted run from ``DIR/checkpoint.pt`` with the
configs and source recorded in ``DIR`` (other flags are then not needed).
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from pathlib import Path
from typing import Any

from saekit.errors import ConfigError, DataError

SOURCE_FILE = "source.json"  # saekit.training.runspec.SOURCE_FILE (not imported: keeps `saekit --help` light)


def parse_count(text: str | int) -> int:
    """'50M' -> 50_000_000; '2.5k' -> 2500; plain integers pass through."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGbB]?)\s*", str(text))
    if not m:
        raise ConfigError(f"--tokens must be a number with an optional k/M/B suffix (e.g. 50M), got {text!r}.")
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from saekit.config import TrainConfig

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
    d.add_argument("--kind", default=None, help="relu | topk (default) | batchtopk | jumprelu")
    d.add_argument("--n-latents", type=int, default=None, help="dictionary width")
    d.add_argument("--k", type=int, default=None, help="active latents per token (topk, batchtopk)")
    d.add_argument("--skip", action="store_true", help="skip transcoder (adds W_skip)")
    d.add_argument("--sparsity-coef", type=float, default=None, help="λ of relu penalties / jumprelu L0")
    d.add_argument("--penalty", default=None, help="relu penalty: l1 | l1_decnorm | tanh | log | lp")
    d.add_argument("--no-tied-init", action="store_true", help="random encoder instead of decoder transpose")
    t = p.add_argument_group("training")
    t.add_argument("--tokens", default=None, help=f"training tokens, e.g. 50M (default {base.total_tokens:,})")
    t.add_argument("--batch-size", type=int, default=None, help=f"activation rows per step (default {base.batch_size})")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-4 / sqrt(n_latents / 16384))")
    t.add_argument("--seed", type=int, default=None, help=f"seed of every random choice (default {base.seed})")
    t.add_argument("--normalize", action="store_true", help="scale activations so E||x||² = d_in")
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


# ---------------------------------------------------------------------- config assembly
def _read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    file = Path(path)
    if not file.is_file():
        raise DataError(f"config file {file} does not exist.")
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"config file {file} is not valid TOML ({e}).") from None


def expand_sweep(dicts: list[dict], sweep: dict[str, list]) -> list[dict]:
    """Every dictionary table crossed with every combination of the [sweep] lists."""
    if not sweep:
        return dicts
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[sweep] {key} must be a non-empty list, got {values!r}.")
    keys = list(sweep)
    out = []
    for base in dicts:
        for combo in itertools.product(*(sweep[k] for k in keys)):
            out.append({**base, **dict(zip(keys, combo))})
    return out


def _spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """{'source': {...}, 'train': {...}, 'dictionaries': [{...}]} from the TOML file and flags."""
    conf = _read_toml(args.config) if args.config else {}
    unknown = sorted(set(conf) - {"source", "train", "dictionary", "sweep"})
    if unknown:
        raise ConfigError(
            f"{args.config} has unknown table(s) {', '.join(unknown)}; expected source, train, dictionary, sweep."
        )
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
        "checkpoint_every": args.checkpoint_every,
        "device": args.device,
    }
    train.update({k: v for k, v in flags.items() if v is not None})
    if "total_tokens" in train:
        train["total_tokens"] = parse_count(train["total_tokens"])
    if args.normalize:
        train["normalize"] = True
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
    }
    dflags = {k: v for k, v in dflags.items() if v is not None}
    if args.skip:
        dflags["skip"] = True
    if args.no_tied_init:
        dflags["init_encoder_from_decoder"] = False
    dicts = [{**d, **dflags} for d in dicts]
    dicts = expand_sweep(dicts, conf.get("sweep", {}))
    return {"source": source, "train": train, "dictionaries": dicts}


def build_source(
    spec: dict[str, Any],
    seed: int,
    device: str,
    part: tuple[int, int] | None = None,
    total_tokens: int | None = None,
) -> Any:
    """The activation source a [source] spec names; ``part=(rank, world)`` keeps only this
    rank's disjoint part (data-parallel training with ``--dist-data local``); ``total_tokens``
    sizes a live stream's tokenization and buffer to the run."""
    given = [k for k in ("cache", "model", "activations") if spec.get(k)]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one activation source: --cache DIR, --model DIR --hookpoint H, or --activations FILE."
        )
    hp = spec.get("hookpoint")
    hp_out = spec.get("hookpoint_out")
    hook = [hp, hp_out] if hp_out else hp
    if spec.get("activations"):
        from safetensors.torch import load_file

        file = Path(spec["activations"])
        if not file.is_file():
            raise DataError(f"activations file {file} does not exist.")
        try:
            tensors = load_file(str(file))
        except Exception as e:
            raise DataError(f"activations file {file} is not a readable safetensors file ({e}).") from None
        if "x" not in tensors:
            raise DataError(f"activations file {file} has no tensor 'x'; expected x [N, d_in] (and y [N, d_out]).")
        x = tensors["x"].float()
        y = tensors["y"].float() if "y" in tensors else None
        if part is not None:  # rows rank::world
            x, y = x[part[0] :: part[1]], (y[part[0] :: part[1]] if y is not None else None)
        return (x, y) if y is not None else x
    if spec.get("cache"):
        from saekit.activations import ActivationCache

        if part is not None:
            raise ConfigError(
                "--dist-data local cannot split a --cache; use --dist-data global (each rank reads "
                "the global batch and keeps its slice)."
            )
        return ActivationCache(spec["cache"], hook, seed=seed, device="cpu", progress=False)
    if not hp:
        raise ConfigError("--model needs --hookpoint (and --hookpoint-out for a transcoder).")
    from saekit.activations import ActivationStream
    from saekit.models import load_model
    from saekit.progress import status

    status(f"loading model {spec['model']} and tokenizing the text...")
    handle = load_model(spec["model"], device=device)
    tokens, doc_ids = live_tokens(spec, handle, total_tokens)
    if part is not None:  # this rank's sequences only: each rank runs the model on its own tokens
        tokens, doc_ids = tokens[part[0] :: part[1]], doc_ids[part[0] :: part[1]]
    buffer = 1 << 16 if total_tokens is None else max(1024, min(1 << 16, total_tokens))
    return ActivationStream(handle, tokens, hook, doc_ids=doc_ids, seed=seed, buffer_tokens=buffer)


def live_tokens(spec: dict[str, Any], handle: Any, total_tokens: int | None) -> tuple[Any, Any]:
    """(tokens, doc_ids) of the source's dataset (default: the built-in training corpus) packed for
    a live model source: only as many rows as the run needs (a stream cycles over its tokens if it
    runs out)."""
    from saekit.data import load_texts, pack_tokens_with_docs

    n_ctx = spec.get("n_ctx") or min(int(getattr(getattr(handle.model, "cfg", None), "n_ctx", 128)), 1024)
    rows = None if total_tokens is None else total_tokens // max(1, n_ctx - 1) + 2
    docs = load_texts(spec.get("dataset"), spec.get("split") or "train", spec.get("text_column") or "text")
    return pack_tokens_with_docs(docs, handle.tokenizer, n_ctx, bos=True, max_rows=rows)


def dictionary_configs(dicts: list[dict], d_in: int, d_out: int, paired: bool, hookpoint: str) -> list:
    from saekit.config import DictionaryConfig

    cfgs = []
    for d in dicts:
        d = dict(d)
        d.setdefault("d_in", d_in)
        if paired:
            d.setdefault("d_out", d_out)
            d.setdefault("transcoder", True)
        d.setdefault("hook_name", hookpoint or "")
        if "n_latents" not in d:
            raise ConfigError("--n-latents (or n_latents in [[dictionary]]) is required.")
        cfgs.append(DictionaryConfig.from_dict(d))
    return cfgs


def run(args: argparse.Namespace) -> int:
    from saekit import runfolder
    from saekit.config import TrainConfig
    from saekit.training import CHECKPOINT_NAME
    from saekit.training.dist_hookpoints import PRODUCER_STATE
    from saekit.training.distributed import make_trainer
    from saekit.training.runspec import check_run, finished_note, load_spec, save_spec

    out = Path(args.out)
    if runfolder.is_writer():
        runfolder.claim(out)  # one writer per run folder
    if args.resume:
        many = (out / PRODUCER_STATE).is_file()  # a --hookpoints run
        if not many and not (out / CHECKPOINT_NAME).is_file() and not any(out.glob("checkpoint.rank*-of-*.pt")):
            raise DataError(f"{out / CHECKPOINT_NAME} does not exist; nothing to resume.")
        if note := finished_note(out):  # every rank reads it, so every rank stops
            if runfolder.is_writer():
                print(note, file=sys.stderr)
            return 0
        spec = load_spec(out)  # paths resolved against OUT, and OUT is the run
    else:
        spec = _spec_from_args(args)
        spec["train"]["out_dir"] = str(out)
        if runfolder.is_writer():
            runfolder.prepare_output(
                out, "train", args.overwrite, hint="use --resume to continue it, --overwrite", what="a training run"
            )
    tcfg = TrainConfig.from_dict(spec["train"])
    if spec["source"].get("hookpoints"):
        from saekit.commands.train_hookpoints import run_hookpoints

        return run_hookpoints(args, spec, tcfg, out)
    from saekit.training.distributed import data_part

    dist_data = getattr(args, "dist_data", "global")
    source = build_source(
        spec["source"], tcfg.seed, tcfg.device, part=data_part(dist_data), total_tokens=tcfg.total_tokens
    )
    if isinstance(source, tuple):
        d_in, d_out, paired = source[0].shape[1], source[1].shape[1], True
    elif hasattr(source, "shape"):
        d_in, d_out, paired = source.shape[1], source.shape[1], False
    else:
        d_in, d_out, paired = source.d_in, source.d_out, bool(getattr(source, "paired", False))
    # A cache names its own hookpoint(s) and model: record them so `saekit eval --model` can splice.
    hookpoint = spec["source"].get("hookpoint") or (getattr(source, "hookpoints", None) or [None])[0]
    cfgs = dictionary_configs(spec["dictionaries"], d_in, d_out, paired, hookpoint)
    for note in check_run(tcfg, source, spec["train"], args.resume) if runfolder.is_writer() else []:
        print(f"saekit train: warning: {note}", file=sys.stderr)
    origin = (getattr(source, "manifest", None) or {}).get("model") or {}
    for cfg in cfgs:
        cfg.model_name = cfg.model_name or str(origin.get("path") or origin.get("name") or spec["source"].get("model") or "")
        cfg.variant = cfg.variant or str(origin.get("variant") or "")
    if not args.resume:
        out.mkdir(parents=True, exist_ok=True)
        if (out / CHECKPOINT_NAME).exists() or any(out.glob("checkpoint.rank*-of-*.pt")):
            raise ConfigError(f"{out} already holds a training run; use --resume to continue it or another --out.")
        save_spec(out, spec)
    # A plain Trainer, or a data-parallel one when torchrun started this process as one of N ranks.
    trainer = make_trainer(
        cfgs, source, tcfg, timeout_s=getattr(args, "dist_timeout", None), data=dist_data,
        shard_latents=getattr(args, "shard_latents", False),
    )
    try:
        if args.resume:
            trainer.resume()
            print(f"resuming at step {trainer.step_count} of {trainer.total_steps}", file=sys.stderr)
        trainer.fit()
    finally:
        if hasattr(source, "close"):  # stop a cache's or stream's prefetch thread
            source.close()
    for i in range(len(cfgs) if trainer.rank == 0 else 0):
        print(f"saved {trainer.dictionary_dir(i)}")
    return 0
