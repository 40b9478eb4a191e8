"""The `saekit` command: thin. Parses arguments, calls the API, prints progress.

Each verb lives in saekit/commands/<verb>.py with `add_parser(subparsers)` (which sets
`func=run`) and `run(args) -> int`. A user error (SaekitError) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from saekit.errors import SaekitError

# verb modules under saekit.commands, in the order `saekit --help` lists them
COMMANDS = ["demo", "model", "cache", "train", "crosscode", "eval", "compare", "sweep_variant", "push", "export", "toy"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saekit",
        description="Train sparse dictionaries on language-model activations and compare them across model variants.",
    )
    from saekit import __version__

    parser.add_argument("--version", action="version", version=f"saekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"saekit.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        code = int(args.func(args) or 0)
    except SaekitError as e:
        print(f"saekit {args.command}: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"saekit {args.command}: interrupted.", file=sys.stderr)
        code = 130
    comm = sys.modules.get("saekit.parallel.comm")
    if comm is not None and comm.joined_group():
        comm.exit_process(code)  # a torchrun rank: keep the exit code, skip gloo's teardown
    return code


if __name__ == "__main__":
    sys.exit(main())
