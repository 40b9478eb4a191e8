"""Hugging Face Hub: load dictionaries from a repo (or the local cache), publish a run in one commit.

Loading goes through ``huggingface_hub.snapshot_download``, so ``HF_HUB_OFFLINE=1`` and the
standard cache (``HF_HOME`` / ``HF_HUB_CACHE``) behave as everywhere else in the HF ecosystem.
Publishing uses ``HfApi.create_repo`` and a single ``HfApi.upload_folder`` commit. The token comes
from the standard login (``hf auth login``) or ``HF_TOKEN``; saekit never prints or stores it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from saekit.dictionaries import publish
from saekit.dictionaries.folder import dictionary_folders
from saekit.dictionaries.publish import README, _offline, is_repo_id
from saekit.errors import DataError
from saekit.io.foreign import load_folder


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
    """Publish a dictionary folder, a run folder (one subfolder per dictionary) or a dictionary
    in ONE commit (``saekit.dictionaries.publish.push_to_hub``), after checking that saekit can read every
    folder it would publish. Returns the commit URL."""
    return publish.push_to_hub(
        source, repo_id, private=private, revision=revision, token=token,
        commit_message=commit_message, endpoint=endpoint, check=load_folder,
    )  # fmt: skip
