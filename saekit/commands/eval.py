"""`saekit eval DICT --model DIR`: core metrics of a dictionary on held-out text, printed and saved."""

from __future__ import annotations

import argparse


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
    p.add_argument("--hook", default=None, help="hookpoint (default: the dictionary's hook_name; IN->OUT names both ends of a transcoder)")
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
    from saekit.pipeline.evaluate_folder import evaluate_folder, metrics_table

    metrics, path = evaluate_folder(
        args.dictionary, model=args.model, acts=args.acts, hook=args.hook, dataset=args.dataset, split=args.split,
        text_column=args.text_column, seqs=args.seqs, splice_seqs=args.splice_seqs, n_ctx=args.n_ctx, out=args.out,
        device=args.device,
    )
    print(metrics_table(metrics))
    print(f"saved {path}")
    return 0
