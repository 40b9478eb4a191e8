"""`saekit compare`: train dictionaries on several model variants, evaluate, compare, write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from saekit.counts import count_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train and compare dictionaries across model variants (results.json + report.html)",
        description="For each model folder: read activations once, train every dictionary config with "
        "several seeds on them, evaluate (metrics, CE loss recovered, offline auto-interp), compare across "
        "variants beside the seed noise floor, and write OUT/results.json and OUT/report.html.",
    )
    p.add_argument(
        "variants",
        nargs="+",
        help="saekit model folders (baseline, regularised, random, ...); folders of one variant (and coef) or of "
        "one `--group` are that group's model seeds",
    )
    p.add_argument(
        "--config",
        default=None,
        help="JSON file: a DictionaryConfig, a list of them, or {name: config}; d_in/d_out may be left out "
        "(read from the model). Default: a top-k SAE and a top-k transcoder on the last MLP.",
    )
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="dictionary seeds per model (≥ 2; default 0 1 2)"
    )
    p.add_argument(
        "--train-tokens",
        type=count_arg("--train-tokens"),
        default=100_000,
        help="training tokens per dictionary, e.g. 100k or 1M",
    )
    p.add_argument("--batch-size", type=int, default=1024, help="dictionary training batch (activation rows)")
    p.add_argument("--lr", type=float, default=2e-3, help="dictionary learning rate")
    p.add_argument(
        "--eval-seqs",
        type=int,
        default=512,
        help="held-out sequences for metrics, auto-interp and abstractness (default 512: abstractness needs ~30k tokens)",
    )
    p.add_argument("--autointerp-latents", type=int, default=256, help="latents explained per dictionary")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic ground-truth check")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="write each variant's training activations once to DIR/<variant> (safetensors shards + manifest) "
        "and train every dictionary and seed from that cache; a complete cache is reused on rerun "
        "(default: hold them in memory)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="HF dataset name or local text/jsonl/parquet path: its first contexts train the dictionaries and the "
        "next --eval-seqs are held out (default: the built-in corpus, train split to train, validation held out)",
    )
    p.add_argument("--split", default=None, help="split of the dataset (or built-in corpus) to read (default train)")
    p.add_argument("--text-column", default="text", help="dataset column holding the text")
    p.add_argument(
        "--browse",
        nargs="*",
        default=None,
        metavar="MODEL",
        help="build a feature browser of every model's first-seed dictionaries (OUT/browser/<dict>/, each latent "
        "linked to its match in the other models'); name models to browse only those; the report links them",
    )
    p.add_argument(
        "--browse-tokens",
        type=count_arg("--browse-tokens"),
        default=20_000,
        help="tokens each browser reads (default 20k)",
    )
    p.add_argument(
        "--concept",
        default=None,
        help="measure the editability axes on this concept (character:NAME, words:REGEX, planted:SPEC:LABEL, or a "
        "text source with --concept-control): localise it among each dictionary's latents and each model's MLP "
        "neurons, ablate, steer; units to half, selectivity AUC and steering efficiency each get a verdict, and the "
        "report shows the curves (docs/editing.md)",
    )
    p.add_argument("--concept-control", default=None, help="control text source for --concept (default: the rest)")
    p.add_argument(
        "--concept-texts",
        type=int,
        default=100,
        help="texts per side of the concept set (default 100; rows for planted:)",
    )
    p.add_argument(
        "--edit-measure",
        choices=["selectivity_auc", "units_to_half", "steering_efficiency"],
        default="selectivity_auc",
        help="the headline measure, also reported as the `editability` axis (all three are always measured)",
    )
    p.add_argument(
        "--crosscoder",
        action="store_true",
        help="also train crosscoders of the baseline against each variant (one per seed, same hookpoint and tokens) "
        "and add their section to the report",
    )
    p.add_argument("--crosscoder-kind", default="batchtopk", help="crosscoder kind: batchtopk (default) | topk | relu")
    p.add_argument("--crosscoder-hookpoint", default=None, help="crosscoder hookpoint (default: the first SAE's)")
    p.add_argument("--crosscoder-n-latents", type=int, default=None, help="crosscoder width (default: the first SAE's)")
    p.add_argument("--crosscoder-k", type=int, default=None, help="crosscoder k (default: the first SAE's)")
    p.add_argument(
        "--crosscoder-sparsity-coef", type=float, default=None, help="λ of a relu crosscoder's decoder-norm L1"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=run)


def _edit_settings(args: argparse.Namespace):
    if args.concept is None:
        if args.concept_control is not None:
            from saekit.errors import ConfigError

            raise ConfigError("--concept-control needs --concept (the concept it is the control of).")
        return None
    from saekit.pipeline.editing import EditSettings

    return EditSettings(args.concept, args.concept_control, args.edit_measure, max_texts=args.concept_texts)


def run(args: argparse.Namespace) -> int:
    from saekit.pipeline.compare_crosscoder import CrosscoderSettings
    from saekit.pipeline.compare_folders import compare_folders

    crosscoder = None
    if args.crosscoder:
        crosscoder = CrosscoderSettings(
            kind=args.crosscoder_kind, hookpoint=args.crosscoder_hookpoint, n_latents=args.crosscoder_n_latents,
            k=args.crosscoder_k, sparsity_coef=args.crosscoder_sparsity_coef,
        )  # fmt: skip
    results = compare_folders(
        args.variants,
        args.config,
        out_dir=args.out,
        seeds=tuple(args.seeds),
        train_tokens=args.train_tokens,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_seqs=args.eval_seqs,
        autointerp_latents=args.autointerp_latents,
        synthetic=not args.no_synthetic,
        device=args.device,
        cache_dir=args.cache_dir,
        dataset=args.dataset,
        split=args.split,
        text_column=args.text_column,
        browse=False if args.browse is None else (args.browse or True),
        browse_tokens=args.browse_tokens,
        edit=_edit_settings(args),
        crosscoder=crosscoder,
    )
    print(
        f"compared {len(results['variants'])} variants × {len(results['settings']['dictionaries'])} "
        f"dictionaries; report: {Path(args.out) / 'report.html'}"
    )
    return 0
