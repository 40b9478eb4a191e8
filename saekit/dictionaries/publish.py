"""Publishing dictionaries to the Hugging Face Hub in one commit (``HfApi.create_repo`` and a
single ``HfApi.upload_folder``). The token comes from the standard login (``hf auth login``) or
``HF_TOKEN``; saekit never prints or stores it.

This module writes and uploads only: it builds no dictionary from a folder, so it sits with the
dictionaries (below saekit.io, which reads folders back) and their own ``push_to_hub`` method
uses it without importing saekit.io. ``saekit.io.push_to_hub`` (in ``saekit.io.hub``) also
checks that saekit can read every folder before it publishes.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from saekit.dictionaries.card import model_card
from saekit.dictionaries.folder import (
    CFG_FILENAME,
    SAEKIT_FILENAME,
    SPARSITY_FILENAME,
    WEIGHTS_FILENAME,
    dictionary_folders,
    save_dictionary,
)
from saekit.errors import DataError, SaekitError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
README = "README.md"


def is_repo_id(text: str) -> bool:
    return bool(_REPO_ID.match(text)) and ".." not in text


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _folder_name(sae: torch.nn.Module) -> str:
    hook = getattr(getattr(sae, "cfg", None), "hook_name", "") or "dictionary"
    return re.sub(r"[^\w.\-]", "_", hook)


# Files a dictionary folder publishes (weights in every format saekit reads); everything else is
# published only when it is small text (JSON/JSONL/Markdown), so checkpoints never go up.
_WEIGHT_FILES = {WEIGHTS_FILENAME, SPARSITY_FILENAME, "sae.safetensors", "ae.pt"}
_TEXT_SUFFIXES = (".json", ".jsonl", ".md")


def _publishable(f: Path) -> bool:
    if f.name.startswith(".") or f.name.endswith(".tmp") or f.name == README:
        return False
    return f.name in _WEIGHT_FILES or f.suffix in _TEXT_SUFFIXES


def _stage(source: Path, staging: Path, folders: list[Path]) -> list[str]:
    """Link (or copy) the files to publish into ``staging``; return their repo paths.

    From each dictionary folder and from the run folder itself: the weight files and the small
    JSON/JSONL/Markdown files (configs, metrics logs); never checkpoints or other binaries.
    """
    files = {f for folder in {source, *folders} for f in folder.iterdir() if f.is_file() and _publishable(f)}
    rels = []
    for f in sorted(files):
        rel = f.relative_to(source)
        dst = staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, dst)  # no copy of large weight files when the filesystem allows it
        except OSError:
            shutil.copy2(f, dst)
        rels.append(rel.as_posix())
    return rels


def push_to_hub(
    source: str | os.PathLike | torch.nn.Module,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    check: Callable[[Path], object] | None = None,
) -> str:
    """Publish a dictionary folder, a run folder (one subfolder per dictionary) or a dictionary.

    Creates the repo if needed and uploads every dictionary plus a generated model card in ONE
    commit. Local files are never modified (the card is written to a staging folder). Returns
    the commit URL. ``check(folder)`` runs on every dictionary folder first (it raises to refuse).
    """
    from huggingface_hub import HfApi

    if not is_repo_id(repo_id):
        raise DataError(f"repo id {repo_id!r} is not of the form org/name.")
    with tempfile.TemporaryDirectory(prefix="saekit-push-") as tmp:
        tmp_path = Path(tmp)
        if isinstance(source, torch.nn.Module):
            src = tmp_path / "src"
            save_dictionary(source, src / _folder_name(source))
            shown = f"dictionary {_folder_name(source)}"
            retry = "call push_to_hub again"
        else:
            src = Path(source)
            shown = str(src)
            retry = f"retry with `saekit push {src} {repo_id}`"
            if not src.is_dir():
                raise DataError(f"{src} is not a folder; expected a dictionary folder or a run folder.")
        if _offline():
            raise SaekitError(f"HF_HUB_OFFLINE=1 is set, so {shown} cannot be published; unset it, then {retry}.")
        folders = dictionary_folders(src)
        if not folders:
            raise DataError(f"{src} holds no dictionaries (no folder with cfg.json + sae_weights.safetensors).")
        described = []
        for folder in folders:
            if check is not None:
                check(folder)
            meta = _read(folder / SAEKIT_FILENAME)
            cfg = _read(folder / CFG_FILENAME)
            rel = "" if folder == src else folder.relative_to(src).as_posix()
            described.append((rel, meta, cfg))
        staging = tmp_path / "staging"
        staging.mkdir()
        files = _stage(src, staging, folders)
        (staging / README).write_text(model_card(repo_id, described), encoding="utf-8")
        api = HfApi(endpoint=endpoint, token=token)
        stage = "creating the repo"
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision and revision != "main":
                stage = f"creating branch {revision}"
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            stage = "uploading"
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                revision=revision,
                commit_message=commit_message
                or f"saekit: upload {len(folders)} dictionar{'y' if len(folders) == 1 else 'ies'}",
            )
        except Exception as e:  # HTTP errors, connection errors, auth errors: one sentence
            raise SaekitError(_upload_error(e, stage, shown, repo_id, len(files) + 1, retry)) from None
        return str(getattr(info, "commit_url", info))


def _upload_error(e: Exception, stage: str, shown: str, repo_id: str, n_files: int, retry: str) -> str:
    status = getattr(getattr(e, "response", None), "status_code", None)
    why = f"HTTP {status}" if status else type(e).__name__
    server = getattr(e, "server_message", None)
    if server:
        why += f": {str(server).strip().splitlines()[0][:200]}"
    if status in (401, 403):
        why += "; log in with `hf auth login` or set HF_TOKEN"
    return (
        f"publishing {shown} to {repo_id} failed while {stage} ({why}); the local files are unchanged "
        f"and none of the {n_files} files was committed, so {retry}."
    )


def _read(file: Path) -> dict:
    from saekit.fileutil import read_json

    if not file.exists():
        return {}
    obj = read_json(file)
    return obj if isinstance(obj, dict) else {}
