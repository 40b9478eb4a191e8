"""`saekit info DICT`: print a dictionary's config and the metrics stored with it."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="print a dictionary's config and stored metrics",
        description="Print the config, the metrics stored at the end of training and eval.json (when "
        "present) of the dictionary in DICT, or of every dictionary of a run folder.",
    )
    p.add_argument("dictionary", help="dictionary folder or run folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from saekit.io.info import dictionary_info, format_info

    records = dictionary_info(args.dictionary)
    print(json.dumps(records, indent=2, sort_keys=True, default=str) if args.json else format_info(records))
    return 0
