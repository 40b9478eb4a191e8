"""saekit's native dictionary folder (the dictionary's own serialisation), also a SAELens folder.

Written by ``SparseDictionary.save`` and ``saekit.save_dictionary``; read back by
``saekit.load`` (saekit.io, which also reads other libraries' folders). It lives here, below
saekit.io, so that a dictionary can save itself without importing the package that loads it.

A folder holds:

- ``cfg.json``: the fields SAELens 6 reads (architecture, d_in, d_sae, dtype, device,
  apply_b_dec_to_input, normalize_activations, reshape_activations, k for top-k, d_out for
  transcoders, and a ``metadata`` block with model_name / hook_name / ...). The same keys are
  also written at the top level for pre-6 readers (SAEBench, Neuronpedia tooling).
- ``sae_weights.safetensors``: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_out],
  b_dec [d_out], threshold [d_sae] (jumprelu, batchtopk), W_skip [d_out, d_in] (skip transcoders).
- ``sparsity.safetensors``: ``sparsity`` = log10(feature density + 1e-10), when known.
- ``saekit.json``: the full DictionaryConfig, the activation scale that was folded, metrics,
  training config, model variant and package versions.

The activation scale (``act_scale``) is folded into the weights before writing, so the files work
on raw activations in any reader.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from saekit import kinds
from saekit.config import DictionaryConfig
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_save_safetensors, atomic_write_json, read_json
from saekit.hooknames import guess_out_hook
from saekit.jsonsafe import json_safe

CFG_FILENAME = "cfg.json"
CROSSCODER_WEIGHTS = "crosscoder_weights.safetensors"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"
SAEKIT_FILENAME = "saekit.json"
FORMAT_VERSION = 1
# Tensor names in sae_weights.safetensors: SAELens's parameter names, nothing else, because
# SAELens loads the file with a strict load_state_dict.
TENSOR_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip", "b_gate", "b_mag", "r_mag")
# cfg.json follows the SAELens 6 schema; SAELens reads `metadata.sae_lens_version` to decide
# whether to apply its pre-6.0 conversion, so we state the schema version we write.
SAELENS_SCHEMA_VERSION = "6.0.0"

_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


def saelens_architecture(cfg: DictionaryConfig) -> str:
    """The SAELens ``architecture`` string for a saekit dictionary config (saekit.kinds)."""
    return kinds.saelens_architecture(cfg.kind, cfg.transcoder, cfg.skip)


def dtype_name(dtype: torch.dtype) -> str:
    if dtype not in _DTYPE_NAMES:
        raise ConfigError(f"dtype {dtype} cannot be saved; expected one of {', '.join(_DTYPE_NAMES.values())}.")
    return _DTYPE_NAMES[dtype]


def hook_layer(hook_name: str) -> int | None:
    """Layer index of a transformer-lens hook name (``blocks.3.hook_resid_post`` -> 3)."""
    parts = hook_name.split(".")
    if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None


def saelens_cfg(cfg: DictionaryConfig, dtype: torch.dtype, info: dict | None = None) -> dict[str, Any]:
    """The ``cfg.json`` dict SAELens 6 reads (and older readers, through the top-level copies)."""
    info = info or {}
    metadata: dict[str, Any] = {
        "sae_lens_version": SAELENS_SCHEMA_VERSION,
        "sae_lens_training_version": None,
        "model_name": cfg.model_name or info.get("model_name", ""),
        "hook_name": cfg.hook_name or info.get("hook_name", ""),
        "hook_head_index": None,
        "model_class_name": info.get("model_class_name", "HookedTransformer"),
        "model_from_pretrained_kwargs": {},
        "prepend_bos": info.get("prepend_bos", True),
        "context_size": info.get("context_size"),
        "dataset_path": info.get("dataset_path"),
        "neuronpedia_id": None,
        "saekit_kind": cfg.kind,
        "saekit_variant": cfg.variant or info.get("variant", ""),
    }
    if cfg.transcoder:
        # the config's own output hook; a guess (MLP in -> MLP out) only for configs built without one
        metadata["hook_name_out"] = (
            cfg.hook_name_out or info.get("hook_name_out") or guess_out_hook(metadata["hook_name"]) or ""
        )
        metadata["hook_head_index_out"] = None
    out: dict[str, Any] = {
        "architecture": saelens_architecture(cfg),
        "d_in": cfg.d_in,
        "d_sae": cfg.n_latents,
        "dtype": dtype_name(dtype),
        "device": "cpu",
        "apply_b_dec_to_input": not cfg.transcoder,
        "normalize_activations": "none",  # the activation scale is folded into the weights
        "reshape_activations": "hook_z" if metadata["hook_name"].endswith("hook_z") else "none",
        "metadata": metadata,
    }
    if kinds.KINDS[cfg.kind].uses_k:
        out["k"] = cfg.k
    if kinds.KINDS[kinds.KINDS[cfg.kind].saved_as].uses_k:  # saved as a top-k SAE (not a JumpReLU)
        out["rescale_acts_by_decoder_norm"] = False
    if cfg.transcoder:
        out["d_out"] = cfg.d_out
    # Pre-6.0 readers look for these at the top level; SAELens 6 ignores unknown top-level keys.
    for key in ("model_name", "hook_name", "hook_head_index", "prepend_bos", "context_size", "dataset_path"):
        out[key] = metadata[key]
    out["hook_layer"] = hook_layer(metadata["hook_name"])
    return out


def _versions() -> dict[str, str]:
    import safetensors

    from saekit import __version__

    return {
        "saekit": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def extra_buffers(sae: torch.nn.Module) -> dict[str, float | int]:
    """Scalar training buffers outside SAELens's names (e.g. batchtopk's threshold_updates).

    They go to ``saekit.json`` rather than the weights file, which SAELens loads strictly.
    """
    out: dict[str, float | int] = {}
    for name, buf in sae.named_buffers():
        if name in TENSOR_NAMES or name == "act_scale" or buf.numel() != 1:
            continue
        out[name] = buf.item()
    return out


def export_tensors(sae: torch.nn.Module) -> tuple[dict[str, torch.Tensor], float]:
    """The dictionary's tensors with ``act_scale`` folded in, in inference form.

    Returns (tensors, folded_scale). The dictionary itself is not modified.
    """
    # A fresh CPU copy of the same class (not deepcopy): a dictionary on the GPU is not
    # duplicated there. No registry lookup, so this module needs nothing from dictionaries/.
    folded = type(sae)(sae.cfg).to(sae.W_enc.dtype)
    folded.load_state_dict(sae.state_dict())
    if hasattr(folded, "to_inference"):
        folded = folded.to_inference()  # batchtopk: the per-token threshold replaces the batch top-k
    scale = float(folded.act_scale) if hasattr(folded, "act_scale") else 1.0
    if hasattr(folded, "fold_act_scale"):
        folded.fold_act_scale()
    state = folded.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if k in TENSOR_NAMES}
    return tensors, scale


def save_dictionary(
    sae: torch.nn.Module,
    path: str | Path,
    extra: dict | None = None,
    feature_density: torch.Tensor | None = None,
) -> Path:
    """Write ``sae`` as a SAELens-compatible saekit folder at ``path`` and return the path.

    ``extra`` is merged into ``saekit.json`` (e.g. ``{"metrics": {...}, "train": tcfg.to_dict(),
    "model": {"name": ..., "variant": ...}, "hook_name_out": ...}``). ``feature_density``
    [n_latents] (fraction of tokens on which each latent fires) is written to
    ``sparsity.safetensors`` as log10(density + 1e-10), SAELens's convention.
    Each file is written atomically; ``saekit.json`` is written last, so a folder with it is complete.
    """
    cfg = getattr(sae, "cfg", None)
    if not isinstance(cfg, DictionaryConfig):
        raise ConfigError(
            f"save_dictionary expects a saekit dictionary with a DictionaryConfig .cfg, got {type(sae).__name__}."
        )
    if cfg.n_sources > 1:  # a crosscoder has its own layout
        return save_crosscoder(sae, path, extra=extra, feature_density=feature_density)
    extra = dict(extra or {})
    reserved = {"saekit_format", "dictionary", "act_scale_folded", "buffers", "versions", "architecture"}
    clash = sorted(reserved & set(extra))
    if clash:
        raise ConfigError(f"extra must not set {', '.join(clash)}; saekit writes those keys itself.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path} exists and is not a folder; expected a folder to write the dictionary into.")
    path.mkdir(parents=True, exist_ok=True)

    tensors, scale = export_tensors(sae)
    # Re-saving over an old folder: remove the files that mark it complete first, so a crash
    # part-way never leaves new weights beside an old config (or a stale sparsity file).
    stale = [SAEKIT_FILENAME, CFG_FILENAME] + ([SPARSITY_FILENAME] if feature_density is None else [])
    for name in stale:
        (path / name).unlink(missing_ok=True)
    dtype = tensors["W_enc"].dtype
    info = {k: extra[k] for k in ("hook_name_out", "context_size", "dataset_path", "prepend_bos") if k in extra}
    model_info = extra.get("model") if isinstance(extra.get("model"), dict) else {}
    info.setdefault("model_name", model_info.get("name", ""))
    info.setdefault("variant", model_info.get("variant", ""))

    atomic_save_safetensors(path / WEIGHTS_FILENAME, tensors, metadata={"format": "pt"})
    if feature_density is not None:
        density = torch.as_tensor(feature_density).detach().float().cpu().reshape(-1)
        if density.numel() != cfg.n_latents:
            raise ConfigError(f"feature_density has {density.numel()} entries, expected n_latents={cfg.n_latents}.")
        atomic_save_safetensors(path / SPARSITY_FILENAME, {"sparsity": torch.log10(density + 1e-10)})
    atomic_write_json(path / CFG_FILENAME, saelens_cfg(cfg, dtype, info))
    meta = {
        "saekit_format": FORMAT_VERSION,
        "architecture": saelens_architecture(cfg),
        "dictionary": cfg.as_saved().to_dict(),  # export_tensors folded free decoder norms
        "act_scale_folded": scale,
        "buffers": extra_buffers(sae),
        "versions": _versions(),
    }
    meta.update(json_safe(extra))
    atomic_write_json(path / SAEKIT_FILENAME, meta)
    return path


# ---------------------------------------------------------------------- crosscoders
CROSSCODER_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


def is_crosscoder_meta(meta: dict) -> bool:
    d = meta.get("dictionary")
    return isinstance(d, dict) and int(d.get("n_sources", 1) or 1) > 1


def save_crosscoder(
    cc: torch.nn.Module, path: str | Path, extra: dict | None = None, feature_density: torch.Tensor | None = None
) -> Path:
    """Write ``cc`` as a saekit crosscoder folder (layout: saekit.io.crosscoder's docstring)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path} exists and is not a folder; expected a folder to write the crosscoder into.")
    path.mkdir(parents=True, exist_ok=True)
    (path / SAEKIT_FILENAME).unlink(missing_ok=True)  # the completion marker goes last
    state = cc.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if k in CROSSCODER_TENSORS}
    tensors["act_scale"] = cc.act_scale.detach().cpu().reshape(-1).clone()
    atomic_save_safetensors(path / CROSSCODER_WEIGHTS, tensors, metadata={"format": "pt"})
    if feature_density is not None:
        density = torch.as_tensor(feature_density).detach().float().cpu().reshape(-1)
        atomic_save_safetensors(path / SPARSITY_FILENAME, {"sparsity": torch.log10(density + 1e-10)})
    else:
        (path / SPARSITY_FILENAME).unlink(missing_ok=True)
    meta = {
        "saekit_format": FORMAT_VERSION,
        "architecture": f"crosscoder_{cc.cfg.kind}",
        "dictionary": cc.cfg.to_dict(),
        "buffers": extra_buffers(cc),
        "versions": _versions(),
    }
    meta.update(json_safe(dict(extra or {})))
    atomic_write_json(path / SAEKIT_FILENAME, meta)
    return path


# ---------------------------------------------------------------------- loading


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, with a clear error for a missing or corrupt file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        raise DataError(f"{file} does not exist; a dictionary folder needs its weights file.")
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{file} is not a readable safetensors file ({e}).") from None


def read_meta(folder: str | Path) -> dict:
    """The ``saekit.json`` of a dictionary folder ({} when the folder has none)."""
    file = Path(folder) / SAEKIT_FILENAME
    return read_json(file, "saekit config") if file.exists() else {}


def is_dictionary_folder(folder: Path) -> bool:
    """True when ``folder`` directly holds a dictionary in a format saekit reads."""
    return any((folder / name).is_file() for name in (SAEKIT_FILENAME, WEIGHTS_FILENAME, "sae.safetensors", "ae.pt"))


def dictionary_folders(root: str | Path) -> list[Path]:
    """Dictionary folders at or under ``root`` (the root itself, or its subfolders, sorted)."""
    root = Path(root)
    if is_dictionary_folder(root):
        return [root]
    found = sorted(
        p.parent for p in root.rglob("*") if p.name in (SAEKIT_FILENAME, WEIGHTS_FILENAME, "sae.safetensors", "ae.pt")
    )
    return sorted(set(found))
