"""The random-control check at small sizes: where does `random` vs `baseline` come out `worse`?

Trains (or reuses) ``--model-seeds`` tiny baseline models and initialises as many random-weights
controls (``--control``: the initialisation, or Heap et al.'s re-randomised baselines), runs
``run_comparison`` on them with one small SAE per hookpoint × width × k (``--hooks``, ``--width``, ``--k``,
``--kind``), and prints, per axis, the two groups' values, the delta with its 95 % interval and the
verdict, then issue 14's control question per dictionary config (explainability and abstractness as
their own Holm family), plus the wall and CPU time of each stage; ``--per-latent`` also keeps every
explained latent's abstractness beside its n-gram F1 (benchmarks/control_axes_per_latent.py reads it).
Used to size and choose the control test (tests/test_verdict_random_control.py).

    PYTHONPATH=. nice -n 10 python benchmarks/control_verdict.py --n-layers 1 --d-model 32 --steps 400 \
        --train-docs 2 --train-rows 3200 --pos-emb rotary --out-init-scale 0.1 --kind relu \
        --hooks blocks.0.hook_resid_post --eval-seqs 512 --explain-seqs 512 --autointerp-latents 64 \
        --dict-tokens 16000 --out /tmp/control

Numbers in docs/comparing.md ("Checking the verdicts") and benchmarks/RESULTS.md ("One random control on
both axes") come from it.
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
    p.add_argument("--control", default="step0", choices=["step0", "rerand", "rerand_keep_emb"],
                   help="the random group: the initialisation (saekit's random variant) or the trained baseline of the "
                   "same seed with every matrix re-drawn from its own mean and std (Heap et al. 2025), optionally "
                   "keeping the trained token and positional embeddings (benchmarks/control_definitions.py)")
    p.add_argument("--model-batch", type=int, default=8)
    p.add_argument("--train-rows", type=int, default=160, help="model training sequences")
    p.add_argument("--train-docs", type=int, default=1, help="documents of the built-in corpus's train split to pack")
    p.add_argument("--model-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hooks", nargs="+", default=None, help="one SAE per hookpoint (default: last hook_mlp_out)")
    p.add_argument("--width", type=int, nargs="+", default=[64], help="dictionary widths (one SAE per width, k, hook)")
    p.add_argument("--k", type=int, nargs="+", default=[4], help="top-k values (one SAE per width, k, hook)")
    p.add_argument("--kind", default="topk", help="dictionary kind (kinds without k ignore --k: one SAE per width)")
    p.add_argument("--sparsity-coef", type=float, default=None, help="λ of kinds without k (default: the kind's)")
    p.add_argument("--dict-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--dict-tokens", type=int, default=16_000)
    p.add_argument("--eval-seqs", type=int, default=128)
    p.add_argument("--explain-seqs", type=int, default=64)
    p.add_argument("--autointerp-latents", type=int, default=32)
    p.add_argument("--train-only", action="store_true", help="train the models and stop (e.g. seeds in parallel)")
    p.add_argument("--reuse", action="store_true", help="reuse model folders already in OUT/models (same settings)")
    p.add_argument("--per-latent", action="store_true",
                   help="also write OUT/per_latent.json: every explained latent's abstractness, F1, recall, density")
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
            if variant == "random" and args.control != "step0":
                paths.append(rerandomised_folder(args.out / "models" / f"baseline{seed}", folder, args.control, seed))
                continue
            h = train_model(base.replace(variant=variant, seed=seed), folder, tokenizer=tok, data=(train, val), progress=False)
            print(f"{variant} seed {seed}: val loss {h.info['val_loss']:.3f}")
            paths.append(folder)
    return paths


def rerandomised_folder(baseline: Path, folder: Path, control: str, seed: int) -> Path:
    """A model folder of the ``random`` variant: the trained baseline's parameters re-drawn per matrix
    (buffers such as the rotary tables untouched), as benchmarks/control_definitions.py builds them."""
    import shutil

    from safetensors.torch import save_file

    from benchmarks.control_definitions import EMBEDDINGS, rerandomised
    from saekit.models import load_model

    shutil.copytree(baseline, folder, dirs_exist_ok=True)
    model = load_model(baseline).model
    rerandomised(model, seed + 100, EMBEDDINGS if control == "rerand_keep_emb" else ())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    info = json.loads((folder / "saekit_model.json").read_text())
    info["variant"], info["config"]["variant"], info["name"] = "random", "random", f"saekit-tiny-{control}"
    (folder / "saekit_model.json").write_text(json.dumps(info, indent=2))
    print(f"{control} seed {seed} from {baseline.name}")
    return folder


def main(argv: list[str] | None = None) -> None:
    from saekit.pipeline import run_comparison

    args = parse_args(argv)
    t0, c0 = time.perf_counter(), cpu_s()
    paths = train_models(args)
    t1, c1 = time.perf_counter(), cpu_s()
    if args.train_only:
        return print(f"models {t1 - t0:.0f} s wall / {c1 - c0:.0f} s CPU")
    hooks = args.hooks or [f"blocks.{args.n_layers - 1}.hook_mlp_out"]
    from saekit.kinds import KINDS

    uses_k = KINDS[args.kind].uses_k
    grid = [(h, w, k if uses_k else None) for h in hooks for w in args.width for k in (args.k if uses_k else [0])]
    one = len(args.width) == len(args.k) == 1  # one SAE per hook: named by its hook, as before
    cfgs = {
        (h if one else f"{h}-w{w}-k{k}"): DictionaryConfig(
            kind=args.kind, d_in=args.d_model, n_latents=w, k=k, hook_name=h, sparsity_coef=args.sparsity_coef
        )
        for h, w, k in grid
    }
    tcfg = TrainConfig(batch_size=64, total_tokens=args.dict_tokens, lr=3e-3, lr_warmup_steps=2, log_every=100)
    per_latent: list[dict] = []
    if args.per_latent:
        record_per_latent(per_latent)
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
    question = control_question(res)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "models_s": t1 - t0, "compare_s": t2 - t1,
               "cpu_s": c2 - c0, "random": rows, "control_question": question}  # fmt: skip
    (args.out / "control.json").write_text(json.dumps(summary, indent=1))
    if args.per_latent:
        (args.out / "per_latent.json").write_text(json.dumps(per_latent))


def record_per_latent(sink: list[dict]) -> None:
    """Wrap the pipeline's ``dictionary_axes`` (in this process only) to keep, per explained latent, its
    abstractness next to its n-gram F1, recall and training density: the two axes of one latent side by side."""
    import numpy as np

    import saekit.pipeline.run as run_mod

    plain = run_mod.dictionary_axes

    def wrapped(sae, handle, acts, eval_tokens, metrics, ai, seed, labels=None):
        out = plain(sae, handle, acts, eval_tokens, metrics, ai, seed, labels)
        ab = np.asarray(out["abstractness"], dtype=np.float64)
        for r in ai.get("latents", []):
            if r["n_fired"] > 0:
                a = ab[r["latent"]]
                sink.append({"model": handle.name, "hook": sae.cfg.hook_name, "width": sae.cfg.n_latents, "k": sae.cfg.k, "seed": seed,
                             "latent": r["latent"], "abstractness": None if np.isnan(a) else float(a), "f1": r["f1"],
                             "recall": r["recall"], "precision": r["precision"], "density": r["density_train"]})  # fmt: skip
        return out

    run_mod.dictionary_axes = wrapped


def control_question(res: dict) -> dict:
    """Issue 14's control question per dictionary config: explainability and abstractness as their own Holm
    family of 2 (``verdicts_from_results(..., axes=CONTROL_AXES)`` on that config's dictionaries alone, as the
    control test asks it), with every dictionary's value per group (to see how far the groups overlap)."""
    from saekit.pipeline.verdicts import verdicts_from_results

    out = {}
    print("control question (Holm over explainability and abstractness, per dictionary config):")
    for name in sorted({r["dict"] for r in res["dictionaries"]}):
        one = {**res, "dictionaries": [r for r in res["dictionaries"] if r["dict"] == name]}
        recs = verdicts_from_results(one, axes=CONTROL_AXES)["verdicts"]["random"][name]
        per = {g: {a: sorted(round(r["axes"][a], 3) for r in one["dictionaries"] if r["variant"].startswith(g)
                             and r["axes"].get(a) is not None) for a in CONTROL_AXES} for g in ("baseline", "random")}
        out[name] = {a: {**{k: recs[a][k] for k in ("baseline", "variant", "delta", "ci95", "verdict")},
                         "values": {g: per[g][a] for g in per}} for a in CONTROL_AXES}  # fmt: skip
        cells = [f"{a} {recs[a]['baseline']:.3f} vs {recs[a]['variant']:.3f} [{recs[a]['ci95'][0]:+.3f}, "
                 f"{recs[a]['ci95'][1]:+.3f}] {recs[a]['verdict']}" for a in CONTROL_AXES]  # fmt: skip
        print(f"  {name}: " + "; ".join(cells), flush=True)
    return out


CONTROL_AXES = ["explainability", "abstractness"]


if __name__ == "__main__":
    main()
