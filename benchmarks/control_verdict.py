"""The random-control check at small sizes: where does `random` vs `baseline` come out `worse`?

Trains (or reuses) ``--model-seeds`` tiny baseline models and initialises as many random-weights
controls, runs ``run_comparison`` on them with one small top-k SAE (``--hook``), and prints, per
axis, the two groups' values, the delta with its 95 % interval and the verdict, plus the wall and
CPU time of each stage. Used to size the control test (tests/test_verdict_random_control.py).

    PYTHONPATH=. nice -n 10 python benchmarks/control_verdict.py --n-layers 2 --d-model 32 \\
        --steps 400 --eval-seqs 128 --out /tmp/control

Numbers in docs/comparing.md ("Checking the verdicts") come from it.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from saekit.config import DictionaryConfig, ModelConfig, TrainConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-ctx", type=int, default=32)
    p.add_argument("--steps", type=int, default=400, help="model training steps")
    p.add_argument("--pos-emb", default="standard", choices=["standard", "rotary"], help="ModelConfig.positional_embedding")
    p.add_argument("--out-init-scale", type=float, default=1.0, help="ModelConfig.out_init_scale (W_O, W_out at init ×)")
    p.add_argument("--parallel-attn-mlp", action="store_true",
                   help="experiment: attention and MLP read the same residual (as Pythia); not a ModelConfig option")
    p.add_argument("--model-batch", type=int, default=8)
    p.add_argument("--train-rows", type=int, default=160, help="model training sequences")
    p.add_argument("--train-docs", type=int, default=1, help="documents of the built-in corpus's train split to pack")
    p.add_argument("--model-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hooks", nargs="+", default=None, help="one SAE per hookpoint (default: last hook_mlp_out)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--dict-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--dict-tokens", type=int, default=16_000)
    p.add_argument("--eval-seqs", type=int, default=128)
    p.add_argument("--explain-seqs", type=int, default=64)
    p.add_argument("--autointerp-latents", type=int, default=32)
    p.add_argument("--train-only", action="store_true", help="train the models and stop (e.g. seeds in parallel)")
    p.add_argument("--reuse", action="store_true", help="reuse model folders already in OUT/models (same settings)")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_models(args: argparse.Namespace) -> list[Path]:
    from saekit.data import default_tokenizer, load_corpus, pack_tokens
    from saekit.models import train_model

    if args.parallel_attn_mlp:  # patch the transformer-lens arguments train_model builds and saves
        import saekit.models.train as mt

        plain = mt.tl_config_dict
        mt.tl_config_dict = lambda cfg: {**plain(cfg), "parallel_attn_mlp": True}
    tok = default_tokenizer()
    train = pack_tokens(load_corpus("train")[: args.train_docs], tok, args.n_ctx, max_rows=args.train_rows)
    val = pack_tokens(load_corpus("validation")[:1], tok, args.n_ctx, max_rows=16)
    base = ModelConfig(
        n_layers=args.n_layers, d_model=args.d_model, n_heads=2, d_mlp=4 * args.d_model, n_ctx=args.n_ctx,
        steps=args.steps, batch_size=args.model_batch, device="cpu", positional_embedding=args.pos_emb,
        out_init_scale=args.out_init_scale,
    )  # fmt: skip
    paths = []
    for variant in ("baseline", "random"):
        for seed in args.model_seeds:
            folder = args.out / "models" / f"{variant}{seed}"
            if args.reuse and (folder / "model.safetensors").exists():
                paths.append(folder)
                continue
            h = train_model(base.replace(variant=variant, seed=seed), folder, tokenizer=tok, data=(train, val), progress=False)
            print(f"{variant} seed {seed}: val loss {h.info['val_loss']:.3f}")
            paths.append(folder)
    return paths


def main(argv: list[str] | None = None) -> None:
    from saekit.pipeline import run_comparison

    args = parse_args(argv)
    t0, c0 = time.perf_counter(), cpu_s()
    paths = train_models(args)
    t1, c1 = time.perf_counter(), cpu_s()
    if args.train_only:
        return print(f"models {t1 - t0:.0f} s wall / {c1 - c0:.0f} s CPU")
    hooks = args.hooks or [f"blocks.{args.n_layers - 1}.hook_mlp_out"]
    cfgs = {
        h: DictionaryConfig(kind="topk", d_in=args.d_model, n_latents=args.width, k=args.k, hook_name=h) for h in hooks
    }
    tcfg = TrainConfig(batch_size=64, total_tokens=args.dict_tokens, lr=3e-3, lr_warmup_steps=2, log_every=100)
    res = run_comparison(
        paths, cfgs, args.out / "compare", seeds=tuple(args.dict_seeds), train_tokens=args.dict_tokens, tcfg=tcfg,
        n_eval_seqs=args.eval_seqs, n_splice_seqs=4, n_explain_seqs=args.explain_seqs,
        autointerp_latents=args.autointerp_latents, split_widths=False, synthetic=False, quiet=True, report=False,
    )  # fmt: skip
    t2, c2 = time.perf_counter(), cpu_s()
    print(f"models {t1 - t0:.0f} s wall / {c1 - c0:.0f} s CPU; comparison {t2 - t1:.0f} s wall / {c2 - c1:.0f} s CPU")
    rows = {}
    fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else str(v)
    for hook, per_axis in res["verdicts"]["random"].items():
        print(hook)
        for axis, rec in per_axis.items():
            ci = rec["ci95"]
            ci_txt = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "-"
            print(f"{axis:>22}: baseline {fmt(rec['baseline'])} random {fmt(rec['variant'])} delta {fmt(rec['delta'])} "
                  f"{ci_txt} -> {rec['verdict']}")  # fmt: skip
            rows[f"{hook}/{axis}"] = {k: rec[k] for k in ("baseline", "variant", "delta", "ci95", "verdict")}
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "models_s": t1 - t0, "compare_s": t2 - t1,
               "cpu_s": c2 - c0, "random": rows}  # fmt: skip
    (args.out / "control.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
