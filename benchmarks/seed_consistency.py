"""Seed consistency of dictionaries on the demo's tiny models: what makes two dictionary seeds agree?

Trains (or reuses) one tiny transformer-lens model on the built-in corpus, reads its activations
once into memory, then for every (hookpoint, batch size, learning rate, tokens) group trains each
dictionary seed as one sweep over widths × k (every config of a seed sees the same batches; seeds
differ in initialisation and data order, as in ``saekit compare``) and matches the decoders of
every pair of seeds with ``saekit.evaluation.matching``: shared fraction at Hungarian cos ≥ 0.7 and
mean Hungarian cosine, beside ``chance_level`` (two random Gaussian dictionaries of the same
shapes). FVU and dead fraction come from held-out validation tokens. Results go to a JSON file,
rewritten after every group so an interrupted run keeps what it measured.

    PYTHONPATH=. python benchmarks/seed_consistency.py --model-steps 300 --widths 128 512 \\
        --tokens 100000 1000000 --out benchmarks/out/seed_consistency.json

Numbers in docs/comparing.md ("Converged before compared") and benchmarks/RESULTS.md come from it.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.evaluation.matching import chance_level, compare_weights
from saekit.fileutil import atomic_write_json, read_json
from saekit.pipeline.demo import DEMO_MODEL

THRESHOLD = 0.7


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-steps", type=int, nargs="+", default=[DEMO_MODEL.steps], help="model training steps (one model each)")
    p.add_argument("--model-seed", type=int, default=0)
    p.add_argument("--variant", default="baseline", help="model variant (random: the untrained control)")
    p.add_argument("--d-model", type=int, nargs="+", default=[DEMO_MODEL.d_model], help="model widths (one model each)")
    p.add_argument("--n-layers", type=int, default=DEMO_MODEL.n_layers)
    p.add_argument("--model-batch", type=int, default=DEMO_MODEL.batch_size, help="model training batch (sequences)")
    p.add_argument("--hooks", nargs="+", default=None, help="default: the last layer's hook_mlp_out")
    p.add_argument("--widths", type=int, nargs="+", default=[512])
    p.add_argument("--ks", type=int, nargs="+", default=[16])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1024])
    p.add_argument("--lrs", type=float, nargs="+", default=[2e-3])
    p.add_argument("--tokens", type=int, nargs="+", default=[100_000], help="dictionary training tokens")
    p.add_argument("--dict-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--act-tokens", type=int, default=400_000, help="training activations held in memory")
    p.add_argument("--eval-seqs", type=int, default=64)
    p.add_argument("--models-dir", type=Path, default=Path("benchmarks/out/models"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/seed_consistency.json"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", type=Path, nargs="+", help="print the markdown table of these result files and exit")
    return p.parse_args(argv)


def print_table(paths: list[Path]) -> None:
    """One markdown row per measured config, from result files written by this script."""
    print("| model (val loss) | hook | width | k | batch | lr | tokens | shared@0.7 (chance) | mean cos (chance) | FVU | dead | CPU s / seed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        res = read_json(path, "results")
        m = res["model"]
        for r in res["rows"]:
            cpu = r.get("train_cpu_s_per_seed_sweep")
            cpu_txt = f"{cpu / r['n_configs_in_sweep']:.0f}" if cpu is not None else "-"
            print(
                f"| {m['name']} ({m['val_loss']:.2f}) | {r['hook'].split('hook_')[-1]} | {r['n_latents']} | {r['k']} "
                f"| {r['batch_size']} | {r['lr']:g} | {r['tokens'] // 1000}k | {r['shared']:.3f} ({r['chance_shared']:.3f}) "
                f"| {r['mean_cos']:.3f} ({r['chance_cos']:.3f}) | {r['fvu']:.4f} | {r['dead']:.2f} | {cpu_txt} |"
            )


def get_model(args: argparse.Namespace, tokenizer, data):
    """Train the model (or reuse the identical one already in --models-dir); time it."""
    from saekit.models import train_model

    cfg = DEMO_MODEL.replace(
        variant=args.variant,
        steps=args.model_steps,
        seed=args.model_seed,
        d_model=args.d_model,
        d_mlp=4 * args.d_model,
        n_layers=args.n_layers,
        batch_size=args.model_batch,
    )
    prefix = "" if args.variant == "baseline" else f"{args.variant}_"
    name = f"{prefix}L{args.n_layers}_d{args.d_model}_b{args.model_batch}_s{args.model_steps}_seed{args.model_seed}"
    start, cpu = time.perf_counter(), time.process_time()
    handle = train_model(cfg, args.models_dir / name, tokenizer=tokenizer, data=data, progress=False)
    return handle, name, (time.perf_counter() - start, time.process_time() - cpu)


def read_rows(handle, tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    """Activations [n_rows, d] per hook, BOS position dropped (as ``saekit compare`` does)."""
    try:  # the reader moved to saekit.activations in the pipeline refactor
        from saekit.activations.read import read_activations
    except ImportError:
        from saekit.evaluation.compare import read_activations

    return {h: a[:, 1:].reshape(-1, a.shape[-1]) for h, a in read_activations(handle, tokens, hooks).items()}


@torch.no_grad()
def fvu_dead(sae: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    z = sae.encode(x)
    err = (sae.decode(z) - x).pow(2).sum()
    return float(err / (x - x.mean(0)).pow(2).sum()), float(((z > 0).sum(0) == 0).float().mean())


def run_group(x: torch.Tensor, x_eval: torch.Tensor, cfgs: list[DictionaryConfig], tcfg_args: dict, seeds) -> list:
    """Every seed trains every config (one sweep per seed); returns one row per config."""
    from saekit.training import train

    per_seed, seconds, cpu = {}, {}, {}
    for s in seeds:
        start, cpu0 = time.perf_counter(), time.process_time()
        tcfg = TrainConfig(seed=s, device="cpu", lr_warmup_steps=10, log_every=10**9, **tcfg_args)
        per_seed[s] = train([c.replace(seed=s) for c in cfgs], x, tcfg, progress=False)
        seconds[s] = time.perf_counter() - start
        cpu[s] = time.process_time() - cpu0
    rows = []
    for i, c in enumerate(cfgs):
        pairs = [compare_weights(per_seed[a][i].W_dec, per_seed[b][i].W_dec, (THRESHOLD,)) for a, b in itertools.combinations(seeds, 2)]
        chance = chance_level(c.n_latents, c.n_latents, c.d_in, 0, (THRESHOLD,))
        fd = [fvu_dead(per_seed[s][i], x_eval) for s in seeds]
        rows.append(
            {
                "n_latents": c.n_latents,
                "k": c.k,
                "shared": sum(p["shared_fraction"][0] for p in pairs) / len(pairs),
                "mean_cos": sum(p["hungarian_mean_cos"] for p in pairs) / len(pairs),
                "chance_shared": chance["shared_fraction"][0],
                "chance_cos": chance["hungarian_mean_cos"],
                "fvu": sum(f for f, _ in fd) / len(fd),
                "dead": sum(d for _, d in fd) / len(fd),
                "train_s_per_seed_sweep": sum(seconds.values()) / len(seconds),
                "train_cpu_s_per_seed_sweep": sum(cpu.values()) / len(cpu),
                "n_configs_in_sweep": len(cfgs),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table:
        return print_table(args.table)
    torch.set_num_threads(args.threads)
    from saekit.models import corpus_tokens

    tokenizer, train_ids, val_ids = corpus_tokens(DEMO_MODEL)
    models = list(itertools.product(args.d_model, args.model_steps))
    for d_model, steps in models:  # model size and model steps: one model, one result file each
        one = argparse.Namespace(**{**vars(args), "d_model": d_model, "model_steps": steps})
        if len(models) > 1:
            one.out = args.out.with_name(f"{args.out.stem}_d{d_model}_s{steps}{args.out.suffix}")
        measure_model(one, argv, tokenizer, train_ids, val_ids)


def measure_model(args: argparse.Namespace, argv, tokenizer, train_ids, val_ids) -> None:
    """Train (or reuse) one model, read its activations once, then every dictionary group on them."""
    handle, model_name, model_s = get_model(args, tokenizer, (train_ids, val_ids))
    hooks = args.hooks or [f"blocks.{args.n_layers - 1}.hook_mlp_out"]
    n_seqs = min(len(train_ids), -(-args.act_tokens // (train_ids.shape[1] - 1)))
    start, cpu = time.perf_counter(), time.process_time()
    acts = read_rows(handle, train_ids[:n_seqs], hooks)
    evals = read_rows(handle, val_ids[: args.eval_seqs], hooks)
    read_s = (time.perf_counter() - start, time.process_time() - cpu)
    prior = read_json(args.out, "results") if args.out.is_file() else {}
    result = {
        "command": "benchmarks/seed_consistency.py " + " ".join(argv or __import__("sys").argv[1:]),
        "machine": f"{platform.machine()} {platform.processor() or ''}, torch threads {args.threads}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": {"name": model_name, "val_loss": handle.info.get("val_loss"), "train_or_load_s": model_s[0], "train_or_load_cpu_s": model_s[1]},
        "activation_rows": n_seqs * (train_ids.shape[1] - 1),
        "read_activations_s": read_s[0],
        "read_activations_cpu_s": read_s[1],
        "rows": prior.get("rows", []) if prior.get("model", {}).get("name") == model_name else [],
    }
    for hook, bs, lr, tokens in itertools.product(hooks, args.batch_sizes, args.lrs, args.tokens):
        d = acts[hook].shape[1]
        cfgs = [
            DictionaryConfig(kind="topk", d_in=d, n_latents=w, k=k, hook_name=hook)
            for w in args.widths
            for k in args.ks
            if k < w
        ]
        tcfg_args = {"batch_size": bs, "lr": lr, "total_tokens": tokens}
        for row in run_group(acts[hook], evals[hook], cfgs, tcfg_args, args.dict_seeds):
            row.update({"model": model_name, "hook": hook, "batch_size": bs, "lr": lr, "tokens": tokens})
            result["rows"].append(row)
            print(
                f"{hook} bs={bs} lr={lr:g} tok={tokens} n={row['n_latents']} k={row['k']}: shared {row['shared']:.3f} "
                f"(chance {row['chance_shared']:.3f}) cos {row['mean_cos']:.3f} (chance {row['chance_cos']:.3f}) "
                f"fvu {row['fvu']:.3f} dead {row['dead']:.2f} [{row['train_s_per_seed_sweep']:.0f} s, cpu {row['train_cpu_s_per_seed_sweep']:.0f} s per seed sweep]",
                flush=True,
            )
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
