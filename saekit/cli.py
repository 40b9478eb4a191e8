"""The `saekit` command: thin. Parses arguments, calls the API, prints progress.

Each verb lives in saekit/commands/<verb>.py with `add_parser(subparsers)` (which sets
`func=run`) and `run(args) -> int`. A user error (SaekitError) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import errno
import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

from saekit.errors import SaekitError

# verb modules under saekit.commands, in the order `saekit --help` lists them
COMMANDS = ["demo", "model", "cache", "train", "crosscode", "eval", "compare", "sweep_variant", "browse", "edit", "toy", "push", "export", "info"]


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
    for p in all_parsers(parser):  # every --help shows each flag's default
        p.formatter_class = DefaultsFormatter
        for action in p._actions:  # a flag's parser that raises a ConfigError keeps its sentence
            if callable(action.type) and not isinstance(action.type, type):
                action.type = _argparse_error(action.type)
    return parser


def _argparse_error(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` with a SaekitError turned into argparse's own error (which argparse would otherwise
    replace by "invalid <function> value"), shown under the subcommand's usage."""

    @functools.wraps(parse)
    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except SaekitError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return wrapped


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command parser ``args`` went to: ``saekit model train``'s for `saekit model train ...`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            child = action.choices.get(getattr(args, action.dest, None) or "")
            return chosen_parser(child, args) if child is not None else parser
    return parser


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to a flag's help unless it has no default or already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser under it (``saekit model train`` included)."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out += all_parsers(child)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    verb = chosen_parser(parser, args)
    if extra:  # argparse would show the top-level usage; show the subcommand's
        verb.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        code = int(args.func(args) or 0)
    except SaekitError as e:
        print(f"{verb.prog}: error: {e}", file=sys.stderr)
        code = 2
    except OSError as e:  # a full disk or a read-only folder met outside saekit's own writers
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG):
            raise
        print(f"{verb.prog}: error: could not write {e.filename or 'a file'}: {e.strerror}.", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"{verb.prog}: interrupted.{_resume_hint(args)}", file=sys.stderr)
        code = 130
    finally:
        from saekit.runfolder import release_all

        release_all()  # this command's output-folder locks
    comm = sys.modules.get("saekit.parallel.comm")
    if comm is not None and comm.joined_group():
        comm.exit_process(code)  # a torchrun rank: keep the exit code, skip gloo's teardown
    return code


def _resume_hint(args: argparse.Namespace) -> str:
    """How to continue an interrupted `saekit train` or `saekit cache`."""
    if args.command == "train" and getattr(args, "out", None):
        return f" The last checkpoint is kept: continue with `saekit train --resume --out {args.out}`."
    if args.command == "cache" and getattr(args, "out", None):
        return " Complete shards are kept: rerun the same command to continue."
    return ""


if __name__ == "__main__":
    sys.exit(main())
