"""Export dictionaries to other libraries' layouts: SAELens, EleutherAI sparsify, circuit-tracer.

Every exporter reads any folder saekit can load (so it also converts, e.g., sparsify -> SAELens),
folds the activation scale into the weights, and writes each file atomically. A run folder (one
subfolder per dictionary) is exported subfolder by subfolder, keeping the same names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml

from saekit.dictionaries.folder import (
    CFG_FILENAME,
    SPARSITY_FILENAME,
    WEIGHTS_FILENAME,
    dictionary_folders,
    export_tensors,
    hook_layer,
    read_meta,
    saelens_architecture,
    saelens_cfg,
)
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_save_safetensors, atomic_write_json, atomic_write_text
from saekit.io.foreign import load_folder
from saekit.kinds import KINDS, saelens_has

FORMATS = ("saelens", "sparsify", "circuit-tracer")
def _meta_info(folder: Path) -> dict:
    meta = read_meta(folder)
    info = {k: meta[k] for k in ("hook_name_out", "context_size", "dataset_path", "prepend_bos") if k in meta}
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    info["model_name"] = model.get("name", "")
    info["variant"] = model.get("variant", "")
    return info


def export_saelens(sae: torch.nn.Module, out: Path, folder: Path) -> list[Path]:
    """``cfg.json`` + ``sae_weights.safetensors`` (+ ``sparsity.safetensors`` when the source has it)."""
    if not saelens_has(saelens_architecture(sae.cfg)):  # saekit writes other names for kinds SAELens lacks
        raise DataError(
            f"{folder} is a {sae.cfg.kind} {'skip ' if sae.cfg.skip else ''}transcoder, which SAELens has "
            "no class for (its transcoders are ReLU or JumpReLU); keep it in saekit's format."
        )
    tensors, _ = export_tensors(sae)
    written = [atomic_save_safetensors(out / WEIGHTS_FILENAME, tensors, metadata={"format": "pt"})]
    written.append(
        atomic_write_json(out / CFG_FILENAME, saelens_cfg(sae.cfg, tensors["W_enc"].dtype, _meta_info(folder)))
    )
    if (folder / SPARSITY_FILENAME).is_file() and folder.resolve() != out.resolve():
        shutil.copyfile(folder / SPARSITY_FILENAME, out / SPARSITY_FILENAME)
        written.append(out / SPARSITY_FILENAME)
    return written


def export_sparsify(sae: torch.nn.Module, out: Path, folder: Path) -> list[Path]:
    """sparsify's ``cfg.json`` + ``sae.safetensors`` (encoder as nn.Linear: weight [n, d_in]).

    sparsify has top-k coders only, with one width for input and output; it centres inputs on
    b_dec exactly when it is not a transcoder, as saekit does, so no bias needs refolding.
    """
    cfg = sae.cfg
    if not KINDS[cfg.kind].sparsify:
        raise DataError(
            f"{folder} is a {cfg.kind} dictionary; sparsify has top-k coders only, so it cannot be exported."
        )
    if cfg.d_out != cfg.d_in:
        raise DataError(f"{folder} maps d_in={cfg.d_in} to d_out={cfg.d_out}; sparsify transcoders need d_out = d_in.")
    tensors, _ = export_tensors(sae)
    st = {
        "encoder.weight": tensors["W_enc"].T.contiguous(),
        "encoder.bias": tensors["b_enc"],
        "W_dec": tensors["W_dec"],
        "b_dec": tensors["b_dec"],
    }
    if cfg.skip:
        st["W_skip"] = tensors["W_skip"]
    sp_cfg = {
        "activation": "topk",
        "expansion_factor": max(1, cfg.n_latents // cfg.d_in),
        "normalize_decoder": not cfg.zero_init_decoder,
        "num_latents": cfg.n_latents,
        "k": cfg.k,
        "multi_topk": cfg.multi_topk,
        "skip_connection": cfg.skip,
        "transcode": cfg.transcoder,
        "d_in": cfg.d_in,
    }
    return [
        atomic_save_safetensors(out / "sae.safetensors", st, metadata={"format": "pt"}),
        atomic_write_json(out / CFG_FILENAME, sp_cfg),
    ]


def _hook_suffix(hook: str) -> str:
    parts = hook.split(".")
    return ".".join(parts[2:]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else hook


def export_circuit_tracer(items: list[tuple[torch.nn.Module, Path]], out: Path) -> list[Path]:
    """circuit-tracer's per-layer transcoder set: ``layer_{L}.safetensors`` + ``config.yaml``.

    The layout circuit-tracer 0.5 reads (``load_relu_transcoder`` / ``load_transcoder_set``, and
    ``load_transcoder_from_hub`` for a Hub repo): W_enc and W_dec both [d_transcoder, d_model],
    b_enc, b_dec, optional W_skip [d_model, d_model], and ``activation_function.threshold`` for
    JumpReLU; one transcoder per layer 0..L, reading and writing d_model-wide hookpoints.
    """
    by_layer: dict[int, tuple[torch.nn.Module, Path]] = {}
    for sae, folder in items:
        cfg = sae.cfg
        # kinds saved as ReLU or JumpReLU (batchtopk/matryoshka: per-latent threshold)
        if not cfg.transcoder or KINDS[cfg.kind].saved_as not in ("relu", "jumprelu") or cfg.d_out != cfg.d_in:
            raise DataError(
                f"{folder} is not a ReLU or JumpReLU transcoder with d_out = d_in; "
                "circuit-tracer's per-layer transcoders are only those."
            )
        layer = hook_layer(cfg.hook_name)
        if layer is None:
            raise DataError(
                f"{folder} has hook_name {cfg.hook_name!r}; circuit-tracer needs a transformer-lens "
                "name like blocks.3.ln2.hook_normalized to know the layer."
            )
        if layer in by_layer:
            raise DataError(
                f"{folder} and {by_layer[layer][1]} are both transcoders for layer {layer}; keep one per layer."
            )
        by_layer[layer] = (sae, folder)
    missing = sorted(set(range(max(by_layer) + 1)) - set(by_layer))
    if missing:
        raise DataError(
            f"circuit-tracer needs a transcoder for every layer 0..{max(by_layer)}; layers {missing} have none."
        )
    skips = {layer for layer, (sae, _) in by_layer.items() if sae.cfg.skip}
    if skips and len(skips) != len(by_layer):
        raise DataError(
            f"layers {sorted(skips)} have skip connections and the others do not; "
            "a circuit-tracer transcoder set needs all or none."
        )
    written: list[Path] = []
    for layer in sorted(by_layer):
        sae, _ = by_layer[layer]
        t, _ = export_tensors(sae)
        st = {"W_enc": t["W_enc"].T.contiguous(), "W_dec": t["W_dec"], "b_enc": t["b_enc"], "b_dec": t["b_dec"]}
        if "W_skip" in t:
            st["W_skip"] = t["W_skip"]
        if "threshold" in t:
            st["activation_function.threshold"] = t["threshold"]
        written.append(atomic_save_safetensors(out / f"layer_{layer}.safetensors", st, metadata={"format": "pt"}))
    first_sae, first_folder = by_layer[0]
    meta = read_meta(first_folder)
    hook_out = first_sae.cfg.hook_name_out or meta.get("hook_name_out") or "blocks.0.hook_mlp_out"
    config = {
        "model_kind": "transcoder_set",
        "model_name": first_sae.cfg.model_name or (meta.get("model") or {}).get("name", ""),
        "feature_input_hook": _hook_suffix(first_sae.cfg.hook_name),
        "feature_output_hook": _hook_suffix(hook_out),
    }
    written.append(atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False)))
    return written


def export(source: str | Path, out: str | Path, format: str) -> list[Path]:
    """Export every dictionary under ``source`` to ``out`` in ``format``; return the files written."""
    if format not in FORMATS:
        raise ConfigError(f"format {format!r} is not known; expected one of {', '.join(FORMATS)}.")
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise DataError(f"{source} is not a folder; expected a dictionary folder or a run folder.")
    folders = dictionary_folders(source)
    if not folders:
        raise DataError(f"{source} holds no dictionaries to export.")
    items = [(load_folder(f), f) for f in folders]
    for sae, folder in items:
        if sae.cfg.n_sources > 1:
            raise ConfigError(
                f"{folder} is a crosscoder, which {format} has no format for; "
                "use saekit.io.crosscoder.export_dictionary_learning."
            )
    if format == "circuit-tracer":
        return export_circuit_tracer(items, out)
    written: list[Path] = []
    for sae, folder in items:
        target = out / folder.relative_to(source) if folder != source else out
        fn = export_saelens if format == "saelens" else export_sparsify
        written += fn(sae, target, folder)
    return written
