"""`saekit push`: publish a dictionary folder or a whole run to the Hugging Face Hub in one commit."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push",
        help="publish dictionaries to the Hugging Face Hub (one commit, with a model card)",
        description="Upload DIR (one dictionary folder, or a run folder with one subfolder per dictionary) "
        "to the Hub repo REPO_ID in a single commit, with a generated model card (README.md). The repo "
        "is created if needed. The token comes from `hf auth login` or HF_TOKEN and is never printed.",
    )
    p.add_argument("dir", help="dictionary folder or run folder")
    p.add_argument("repo_id", help="Hub repo id, org/name")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing; default main)")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saekit.io import push_to_hub

    url = push_to_hub(
        args.dir,
        args.repo_id,
        private=True if args.private else None,
        revision=args.revision,
        commit_message=args.message,
    )
    print(f"published {args.dir} to {args.repo_id}: {url}")
    return 0
