"""Model folders on disk, and loading any model saekit can take activations from.

A saekit model folder holds model.safetensors, tl_config.json, tokenizer/, saekit_model.json
(variant, coefficient, config, train/validation loss) and, for `pruned`, masks.safetensors.
saekit_model.json is written last: a folder without it is not a complete model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from saekit.device import resolve_device
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_save_safetensors, atomic_write_json, read_json
from saekit.models.handle import ModelHandle

INFO_FILE = "saekit_model.json"


def save_model_folder(handle: ModelHandle, tl_args: dict, info: dict, masks: dict | None = None) -> Path:
    out = Path(handle.path)
    out.mkdir(parents=True, exist_ok=True)
    (out / INFO_FILE).unlink(missing_ok=True)  # incomplete until rewritten below
    atomic_save_safetensors(out / "model.safetensors", handle.model.state_dict())
    atomic_write_json(out / "tl_config.json", tl_args)
    handle.tokenizer.save_pretrained(out / "tokenizer")
    if masks:
        atomic_save_safetensors(out / "masks.safetensors", {k: v.to(torch.uint8) for k, v in masks.items()})
    atomic_write_json(out / INFO_FILE, info)
    return out


def _load_saekit_folder(folder: Path, device: torch.device) -> ModelHandle:
    from safetensors.torch import load_file

    from saekit.data.tokenizer import load_tokenizer
    from saekit.models.build import build_model

    info = read_json(folder / INFO_FILE, "model info file")
    tl_args = read_json(folder / "tl_config.json", "model config file")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise DataError(f"model weights {weights} are missing.")
    model = build_model(tl_args)
    try:
        state = load_file(weights)
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise DataError(
            f"model weights {weights} do not match {folder / 'tl_config.json'}: {str(e).splitlines()[0]}"
        ) from None
    model.to(device, print_details=False).eval()
    tok = load_tokenizer(folder / "tokenizer")
    return ModelHandle(
        model, tok, "transformer_lens", info.get("name", folder.name), info.get("variant", ""), folder, info
    )


def _load_hf_folder(folder: Path, device: torch.device) -> ModelHandle:
    """A local Hugging Face model, used through forward hooks on module paths."""
    try:
        model, tok = _hf_from_pretrained(str(folder))
    except Exception as e:
        raise DataError(
            f"could not load the Hugging Face model in {folder}: {type(e).__name__}: {e}".rstrip(".") + "."
        ) from None
    model.to(device).eval()
    return ModelHandle(model, tok, "hf", folder.name, "pretrained", folder, {})


def _hf_from_pretrained(source: str) -> tuple[torch.nn.Module, object]:
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(source), AutoTokenizer.from_pretrained(source)


def _load_hf_named(name: str, device: torch.device) -> ModelHandle:
    """A Hub id transformer-lens does not know: a plain Hugging Face model (from the local cache when
    offline), used through forward hooks on module paths (`encoder.layer.3.output`)."""
    try:
        model, tok = _hf_from_pretrained(name)
    except Exception as e:
        cause = (str(e).splitlines() or [""])[0]
        cause = f"{type(e).__name__}: {cause[:157] + '...' if len(cause) > 160 else cause}".rstrip(".")
        raise DataError(
            f"model {name!r} is not a transformer-lens model name, not a folder here, and Hugging Face could not "
            f"load it ({cause}); give a saekit or Hugging Face model folder, or a Hub id that is in the local "
            "Hugging Face cache (download it once with `hf download "
            f"{name}` where there is network) or reachable online."
        ) from None
    model.to(device).eval()
    return ModelHandle(model, tok, "hf", name, "pretrained", None, {})


def _transformer_lens_knows(name: str) -> bool:
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        get_official_model_name(name)
    except ValueError:
        return False
    return True


def _load_tl_pretrained(name: str, device: torch.device) -> ModelHandle:
    """Any transformer-lens pretrained name (downloads from the Hub unless cached)."""
    from transformer_lens import HookedTransformer

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated", category=DeprecationWarning)
            model = HookedTransformer.from_pretrained(name, device=str(device))
    except Exception as e:
        first = (str(e).splitlines() or [""])[0]
        first = first[:157] + "..." if len(first) > 160 else first
        raise DataError(
            f"could not load transformer-lens model {name!r} ({type(e).__name__}: {first}); offline, a named "
            "model must be in the local Hugging Face cache, or give its local folder."
        ) from None
    model.eval()
    return ModelHandle(model, model.tokenizer, "transformer_lens", name, "pretrained", None, {})


def load_model(source: str | Path, device: str | torch.device = "cpu") -> ModelHandle:
    """Load a saekit model folder, a local Hugging Face model folder, a transformer-lens name, or any
    other Hugging Face Hub id (a plain HF model with module-path hookpoints, from the local cache
    when offline)."""
    dev = resolve_device(device)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / INFO_FILE).is_file():
            return _load_saekit_folder(path, dev)
        if (path / "config.json").is_file():
            return _load_hf_folder(path, dev)
        if (path / "tl_config.json").is_file():
            raise DataError(f"model folder {path} is incomplete (no {INFO_FILE}); its training did not finish.")
        raise DataError(f"folder {path} holds no model: expected {INFO_FILE} (saekit) or config.json (Hugging Face).")
    if _looks_local(str(source), path):
        raise DataError(f"no such folder: {path} (a model folder was expected there).")
    if _transformer_lens_knows(str(source)):
        return _load_tl_pretrained(str(source), dev)
    return _load_hf_named(str(source), dev)


def _looks_local(source: str, path: Path) -> bool:
    """A path rather than a model name: it starts like one, has more than one '/', lies in a folder that
    exists, or is one name with a file suffix. (A Hub id ``org/name`` may hold dots: ``Qwen/Qwen2.5-0.5B``.)"""
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        return True
    return (path.parent != Path(".") and path.parent.is_dir()) or ("/" not in source and bool(path.suffix))


def existing_model_info(folder: Path) -> dict | None:
    """The info of a complete saekit model in `folder`, None if the folder is empty or absent."""
    from saekit.runfolder import is_blank

    if is_blank(folder):
        return None
    info = folder / INFO_FILE
    if not info.is_file():
        raise ConfigError(
            f"output folder {folder} is not empty and holds no saekit model; choose another --out or pass --overwrite."
        )
    try:
        return json.loads(info.read_text())
    except json.JSONDecodeError:
        raise DataError(f"model info file {info} is not valid JSON.") from None
