"""Hugging Face Hub: load dictionaries from a repo (or the local cache), publish a run in one commit.

Loading goes through ``huggingface_hub.snapshot_download``, so ``HF_HUB_OFFLINE=1`` and the
standard cache (``HF_HOME`` / ``HF_HUB_CACHE``) behave as everywhere else in the HF ecosystem.
Publishing uses ``HfApi.create_repo`` and a single ``HfApi.upload_folder`` commit. The token comes
from the standard login (``hf auth login``) or ``HF_TOKEN``; saekit never prints or stores it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from saekit.errors import DataError, SaekitError
from saekit.io.card import model_card
from saekit.io.foreign import load_folder
from saekit.io.format import (
    CFG_FILENAME,
    SAEKIT_FILENAME,
    SPARSITY_FILENAME,
    WEIGHTS_FILENAME,
    dictionary_folders,
    save_dictionary,
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
README = "README.md"


def is_repo_id(text: str) -> bool:
    return bool(_REPO_ID.match(text)) and ".." not in text


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def download(repo_id: str, subfolder: str | None = None, revision: str | None = None) -> Path:
    """Local path of ``repo_id`` (only ``subfolder`` and the card when given), from the cache if there."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # newer huggingface_hub: the cache knows the repo's file list and sees files missing from it
    incomplete = getattr(hf_errors, "IncompleteSnapshotError", ())
    patterns = [f"{subfolder.strip('/')}/*", README] if subfolder else None
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except incomplete:
        raise DataError(
            f"{repo_id} is only partly in the local Hugging Face cache and the Hub cannot be reached; "
            "pass subfolder= for a dictionary that is cached, or go online (unset HF_HUB_OFFLINE)."
        ) from None
    except RepositoryNotFoundError:
        raise DataError(
            f"Hub repo {repo_id} was not found (or is private: log in with `hf auth login` or set HF_TOKEN)."
        ) from None
    except RevisionNotFoundError:
        raise DataError(f"Hub repo {repo_id} has no revision {revision!r}.") from None
    except LocalEntryNotFoundError:
        if _offline():
            raise DataError(
                f"{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set; "
                "unset HF_HUB_OFFLINE to download it."
            ) from None
        raise DataError(
            f"could not download {repo_id} from the Hub and it is not in the local cache; check the network."
        ) from None
    except HfHubHTTPError as e:  # e.g. 401 on a gated repo: the status says what to do
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise DataError(
            f"the Hub refused to download {repo_id} (HTTP {status}); check access to the repo and your login."
        ) from None


def resolve(path_or_repo_id: str | os.PathLike, subfolder: str | None = None, revision: str | None = None) -> Path:
    """The local folder for a path or a Hub repo id (downloaded or from the cache), plus subfolder."""
    path = Path(path_or_repo_id)
    if path.exists():
        root = path
    elif isinstance(path_or_repo_id, str) and is_repo_id(path_or_repo_id):
        try:
            root = download(path_or_repo_id, subfolder, revision)
        except DataError as e:  # "runs/sae" may be a mistyped local path: say both
            msg = str(e)
            raise DataError(f"there is no local folder {path_or_repo_id}, and {msg[0].lower()}{msg[1:]}") from None
    else:
        raise DataError(f"{path_or_repo_id} is neither an existing folder nor a Hub repo id (org/name).")
    if not subfolder:
        return root
    folder = root / subfolder
    if not folder.is_dir():
        found = [str(p.relative_to(root)) for p in dictionary_folders(root)]
        hint = f"it has {', '.join(found)}" if found else "it holds no dictionaries"
        raise DataError(f"{path_or_repo_id} has no subfolder {subfolder!r}; {hint}.")
    return folder


def load(
    path_or_repo_id: str | os.PathLike,
    subfolder: str | None = None,
    revision: str | None = None,
    device: str | torch.device | None = None,
) -> torch.nn.Module:
    """Load a dictionary from a local folder or a Hub repo (``"org/name"``).

    The folder may be saekit's own, SAELens's, sparsify's or dictionary_learning's.
    ``subfolder`` picks one dictionary of a run (e.g. a hookpoint); a folder with exactly one
    dictionary below it needs none.
    """
    folder = resolve(path_or_repo_id, subfolder, revision)
    sae = load_folder(folder)
    return sae.to(device) if device is not None else sae


# ---------------------------------------------------------------------- publishing


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
) -> str:
    """Publish a dictionary folder, a run folder (one subfolder per dictionary) or a dictionary.

    Creates the repo if needed and uploads every dictionary plus a generated model card in ONE
    commit. Local files are never modified (the card is written to a staging folder). Returns
    the commit URL.
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
            load_folder(folder)  # refuse to publish a folder saekit itself cannot read
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
