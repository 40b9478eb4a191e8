"""`saekit eval DICT --model DIR`: core metrics of a dictionary on held-out text, printed and saved."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# the figures printed, in order (all are saved)
SHOWN = [
    ("l0", "L0"),
    ("fvu", "FVU"),
    ("explained_variance", "explained variance"),
    ("mse", "MSE"),
    ("cosine", "cos(x, x̂)"),
    ("shrinkage", "shrinkage ‖x̂‖/‖x‖"),
    ("dead_fraction", "dead fraction"),
    ("dense_fraction", "dense fraction (>10%)"),
    ("ce_loss_recovered", "CE loss recovered (zero abl.)"),
    ("ce_loss_recovered_mean_ablation", "CE loss recovered (mean abl.)"),
    ("kl_div", "KL(clean ‖ spliced)"),
    ("clean_loss", "clean loss"),
    ("spliced_loss", "spliced loss"),
    ("delta_loss", "Δ loss"),
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a dictionary: reconstruction, sparsity, CE loss recovered",
        description="Evaluate dictionary DICT on held-out text through the model in --model (core metrics, "
        "CE loss recovered with zero and mean ablation, KL), or on cached activations with --acts.",
    )
    p.add_argument("dictionary", help="dictionary folder (saekit, SAELens, sparsify) or Hub repo id")
    p.add_argument("--model", help="model folder or name the dictionary was trained on")
    p.add_argument("--acts", help="activation cache folder (core metrics only, no model needed)")
    p.add_argument("--hook", default=None, help="hookpoint (default: the dictionary's hook_name)")
    p.add_argument("--dataset", default=None, help="HF dataset name or local text/jsonl/parquet path (default: built-in corpus)")
    p.add_argument("--split", default="validation", help="split of the dataset or built-in corpus for the text (default validation)")
    p.add_argument("--text-column", default="text", help="dataset column holding the text")
    p.add_argument("--seqs", type=int, default=64, help="held-out sequences for the core metrics (default 64)")
    p.add_argument("--splice-seqs", type=int, default=32, help="sequences spliced through the model (default 32)")
    p.add_argument("--n-ctx", type=int, default=None, help="context length (default: the model's, at most 1024)")
    p.add_argument("--out", default=None, help="JSON file for the metrics (default DICT/eval.json)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from saekit.errors import ConfigError
    from saekit.evaluation import evaluate
    from saekit.evaluation.splice import split_hooks
    from saekit.fileutil import atomic_write_json
    from saekit.io import load
    from saekit.jsonsafe import json_safe

    if not args.model and not args.acts:
        raise ConfigError("saekit eval needs --model (a model folder) or --acts (an activation cache).")
    sae = load(args.dictionary, device=args.device)
    sae.eval()
    in_hook, out_hook = split_hooks(sae, args.hook, None)
    if args.model:
        from saekit.activations import default_n_ctx, read_activations
        from saekit.data import load_texts, pack_tokens
        from saekit.models import load_model

        handle = load_model(args.model, device=args.device)
        n_ctx = default_n_ctx(handle, args.n_ctx)
        docs = load_texts(args.dataset, args.split, args.text_column)
        tokens = pack_tokens(docs, handle.tokenizer, n_ctx, max_rows=args.seqs)
        hooks = [h for h in (in_hook, out_hook) if h]
        acts = read_activations(handle, tokens, hooks)
        rows = {h: a[:, 1:].reshape(-1, a.shape[-1]) for h, a in acts.items()}  # BOS left out
        source = (rows[in_hook], rows[out_hook]) if out_hook else rows[in_hook]
        with torch.no_grad():
            metrics = evaluate(sae, source, model=handle, tokens=tokens[: args.splice_seqs], hook_name=in_hook)
    else:
        from saekit.activations import ActivationCache

        cache = ActivationCache(args.acts, [in_hook, out_hook] if out_hook else in_hook, prefetch=False)
        with torch.no_grad():
            metrics = evaluate(sae, cache)
    width = max(len(label) for _, label in SHOWN)
    for key, label in SHOWN:
        if key in metrics:
            v = metrics[key]
            print(
                f"{label:<{width}}  {v:.4f}" if isinstance(v, float) and math.isfinite(v) else f"{label:<{width}}  {v}"
            )
    out = Path(args.out) if args.out else Path(args.dictionary) / "eval.json"
    if not args.out and not Path(args.dictionary).is_dir():
        out = Path("eval.json")
    clean = json_safe(metrics)
    atomic_write_json(out, clean)
    print(f"saved {out}")
    json.dumps(clean)  # fail here, not later, if a value is not JSON
    return 0
