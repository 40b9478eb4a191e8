"""`saekit export`: write dictionaries in another library's layout (SAELens, sparsify, circuit-tracer)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export dictionaries to SAELens, sparsify or circuit-tracer layouts",
        description="Read every dictionary under DIR (saekit, SAELens, sparsify or dictionary_learning "
        "folders) and write it to OUT in FORMAT, with the activation scale folded into the weights. "
        "circuit-tracer takes a set of ReLU transcoders, one per layer.",
    )
    p.add_argument("dir", help="dictionary folder or run folder")
    p.add_argument("--format", required=True, choices=["saelens", "sparsify", "circuit-tracer"], help="target layout")
    p.add_argument("--out", default=None, help="output folder (default: DIR-FORMAT next to DIR)")
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace an earlier export in --out (files saekit did not write are never deleted)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from saekit.io import export
    from saekit.runfolder import claim, prepare_output

    src = Path(args.dir)
    out = Path(args.out) if args.out else src.resolve().with_name(f"{src.resolve().name}-{args.format}")
    claim(out)  # one writer per folder
    prepare_output(out, "export", args.overwrite)
    written = export(src, out, args.format)
    print(f"exported {len(written)} files to {out} ({args.format})")
    return 0
