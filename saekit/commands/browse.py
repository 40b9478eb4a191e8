"""`saekit browse DICT --model MODEL --out DIR`: a static feature browser (open DIR/index.html from disk)."""

from __future__ import annotations

import argparse

from saekit.counts import count_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "browse",
        help="build a static feature browser of a dictionary (every latent, its contexts and matches)",
        description="Run MODEL over --tokens tokens of text, encode them with DICT, and write a static site to "
        "--out: an index of all latents (density, max activation, n-gram explanation and F1, token entropy, "
        "abstractness) with sorting, range filters and search, and a page per latent. With --compare, each "
        "latent links to its best match (decoder cosine) in the other dictionaries.",
    )
    p.add_argument("dictionary", help="dictionary folder (saekit, SAELens, sparsify) or Hub repo id")
    p.add_argument("--model", required=True, help="model folder or name the dictionary was trained on")
    p.add_argument("--out", required=True, help="new or empty folder for the site")
    p.add_argument("--tokens", type=count_arg("--tokens"), default=200_000, help="tokens to read, e.g. 200k (default 200k)")
    p.add_argument(
        "--dataset", default=None, help="HF dataset name or local text/jsonl/parquet path (default: built-in corpus)"
    )
    p.add_argument("--split", default="train", help="dataset split to read (default train)")
    p.add_argument("--text-column", default="text", help="text column of the dataset (default text)")
    p.add_argument("--compare", nargs="+", default=[], metavar="OTHER_DICT", help="other dictionaries to match against")
    p.add_argument(
        "--compare-model",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="model of each --compare dictionary (default: --model), e.g. another variant",
    )
    p.add_argument("--n-ctx", type=int, default=None, help="context length (default: the model's, at most 128)")
    p.add_argument("--batch-rows", type=int, default=8, help="sequences per forward pass (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument(
        "--neuronpedia-out",
        default=None,
        metavar="DIR",
        help="also write the dictionary's latents as SAEDashboard NeuronpediaRunner batch files (DIR/batch-<i>.json), "
        "the input of Neuronpedia's converter; see docs/browser.md for the fields filled",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a browser (and export) saekit browse wrote before")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.report.feature_browser import build_browser

    build_browser(
        args.dictionary,
        args.model,
        args.out,
        tokens=args.tokens,
        dataset=args.dataset,
        split=args.split,
        text_column=args.text_column,
        compare=args.compare,
        compare_models=args.compare_model,
        n_ctx=args.n_ctx,
        batch_rows=args.batch_rows,
        device=args.device,
        overwrite=args.overwrite,
        neuronpedia_out=args.neuronpedia_out,
    )
    return 0
