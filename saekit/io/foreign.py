"""Read dictionaries other libraries wrote: SAELens, EleutherAI sparsify, dictionary_learning.

Each reader turns a folder into (DictionaryConfig, tensors in saekit's layout) and hands them to
``build_dictionary``, which checks every tensor. Conversions are exact: where the source
computes something saekit's dictionaries do not (an SAE that does not centre its input on b_dec,
SAELens's ``rescale_acts_by_decoder_norm``), the difference is folded into the weights so
``encode``/``decode`` give the source's outputs. Decoder rows are kept as stored (not
renormalised), because renormalising would change a top-k selection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from saekit.config import DictionaryConfig
from saekit.dictionaries.folder import (
    CFG_FILENAME,
    CROSSCODER_TENSORS,
    CROSSCODER_WEIGHTS,
    FORMAT_VERSION,
    SAEKIT_FILENAME,
    TENSOR_NAMES,
    WEIGHTS_FILENAME,
    is_crosscoder_meta,
    read_tensors,
)
from saekit.errors import ConfigError, DataError
from saekit.fileutil import load_torch_file, read_json
from saekit.kinds import KINDS, dictionary_learning_classes, saelens_reads

SPARSIFY_WEIGHTS = "sae.safetensors"
DL_WEIGHTS = "ae.pt"

# SAELens architecture -> (saekit kind, transcoder, skip); dictionary_learning classes read
SAELENS_ARCHITECTURES: dict[str, tuple[str, bool, bool]] = saelens_reads()
DL_CLASSES = tuple(dictionary_learning_classes())


# ---------------------------------------------------------------------- saekit's own folders
def build_dictionary(
    cfg: DictionaryConfig,
    tensors: dict[str, torch.Tensor],
    source: str,
    buffers: dict[str, float | int] | None = None,
) -> torch.nn.Module:
    """Create the saekit dictionary ``cfg`` describes and fill it with ``tensors``.

    Every expected tensor must be present with the expected shape, and nothing else may be there:
    each mismatch is one DataError sentence naming ``source`` and the tensor.
    """
    from saekit.dictionaries import create

    sae = create(cfg, init=False)
    if hasattr(sae, "to_inference"):
        sae = sae.to_inference()  # files hold the inference form (batchtopk: per-token threshold)
    full = sae.state_dict()
    expected = {k: v for k, v in full.items() if k in TENSOR_NAMES}
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise DataError(
            f"{source} is missing tensor(s) {', '.join(missing)}; a {cfg.kind} dictionary needs "
            f"{', '.join(sorted(expected))}."
        )
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise DataError(
            f"{source} has unexpected tensor(s) {', '.join(unexpected)} for a {cfg.kind} dictionary "
            f"(expected {', '.join(sorted(expected))})."
        )
    for name, ref in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise DataError(
                f"tensor {name} in {source} has shape {list(got.shape)}, expected {list(ref.shape)} "
                f"(d_in={cfg.d_in}, n_latents={cfg.n_latents}, d_out={cfg.d_out})."
            )
        if not got.is_floating_point():
            raise DataError(f"tensor {name} in {source} has dtype {got.dtype}, expected a floating-point tensor.")
    dtype = tensors["W_enc"].dtype
    sae = sae.to(dtype)
    state = {k: v for k, v in full.items() if k not in TENSOR_NAMES}  # act_scale = 1, counters
    for name, value in (buffers or {}).items():
        if name in state:
            state[name] = torch.full_like(state[name], value)
    state.update(tensors)
    sae.load_state_dict(state, strict=True)
    return sae.eval()


def dictionary_config_from_saekit(meta: dict, source: str) -> DictionaryConfig:
    d = meta.get("dictionary")
    if not isinstance(d, dict):
        raise DataError(f"{source} has no 'dictionary' object; expected the DictionaryConfig saekit writes.")
    try:
        return DictionaryConfig.from_dict(d)
    except ConfigError as e:
        raise DataError(f"{source} holds an invalid dictionary config: {e}") from None


def load_native(folder: Path) -> torch.nn.Module:
    """Load a folder saekit wrote (``saekit.json`` + ``cfg.json`` + ``sae_weights.safetensors``)."""
    meta_file = folder / SAEKIT_FILENAME
    meta = read_json(meta_file, "saekit config")
    version = meta.get("saekit_format")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(
            f"{meta_file} has saekit_format {version!r}; this saekit reads format ≤ {FORMAT_VERSION} (upgrade saekit)."
        )
    if is_crosscoder_meta(meta):
        return load_crosscoder(folder, meta)
    cfg = dictionary_config_from_saekit(meta, str(meta_file))
    if cfg.transcoder and not cfg.hook_name_out and isinstance(meta.get("hook_name_out"), str):
        cfg.hook_name_out = meta["hook_name_out"]  # folders written before the config had the field
    cfg_file = folder / CFG_FILENAME
    if cfg_file.exists():
        sl = read_json(cfg_file, "SAELens config")
        for key, want in (("d_in", cfg.d_in), ("d_sae", cfg.n_latents)):
            if sl.get(key) != want:
                raise DataError(
                    f"{cfg_file} says {key}={sl.get(key)!r} but {meta_file} says {want}; the folder is inconsistent."
                )
    buffers = meta.get("buffers") if isinstance(meta.get("buffers"), dict) else {}
    sae = build_dictionary(cfg, read_tensors(folder / WEIGHTS_FILENAME), str(folder / WEIGHTS_FILENAME), buffers)
    sae.saekit_meta = meta  # metrics, training config, variant: for model cards and reports
    return sae


# ---------------------------------------------------------------------- foreign folders
def load_crosscoder(folder: Path, meta: dict) -> torch.nn.Module:
    """The crosscoder of a folder ``save_crosscoder`` wrote (every tensor checked)."""
    cfg = dictionary_config_from_saekit(meta, str(folder / SAEKIT_FILENAME))
    file = folder / CROSSCODER_WEIGHTS
    tensors = read_tensors(file)
    from saekit.dictionaries import create

    cc = create(cfg, init=False).to_inference()
    expected = {k: v for k, v in cc.state_dict().items() if k in CROSSCODER_TENSORS}
    expected["act_scale"] = cc.act_scale.reshape(-1)
    if sorted(tensors) != sorted(expected):
        raise DataError(f"{file} holds tensors {sorted(tensors)}; a {cfg.kind} crosscoder needs {sorted(expected)}.")
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise DataError(
                f"tensor {name} in {file} has shape {list(tensors[name].shape)}, expected {list(ref.shape)} "
                f"(n_sources={cfg.n_sources}, d={cfg.d_in}, n_latents={cfg.n_latents})."
            )
    cc = cc.to(tensors["W_enc"].dtype)
    state = cc.state_dict()
    for name, value in (meta.get("buffers") or {}).items():
        if name in state:
            state[name] = torch.full_like(state[name], value)
    state.update({k: v for k, v in tensors.items() if k != "act_scale"})
    state["act_scale"] = tensors["act_scale"].reshape(-1, 1)
    cc.load_state_dict(state, strict=True)
    cc.saekit_meta = meta
    return cc.eval()


def _center_input(tensors: dict[str, torch.Tensor], source_centres: bool, saekit_centres: bool) -> None:
    """Fold a difference in input centring into b_enc, in place.

    (x - b_dec)·W_enc + b = x·W_enc + (b - b_dec·W_enc), so a source that centres and a target
    that does not (or the reverse) differ by b_dec·W_enc in the encoder bias.
    """
    if source_centres == saekit_centres:
        return
    sign = -1.0 if source_centres else 1.0
    b_dec = tensors["b_dec"].to(tensors["W_enc"].dtype)
    if "b_gate" in tensors and "r_mag" in tensors and "b_mag" in tensors:  # gated: both paths
        tensors["b_gate"] = tensors["b_gate"] + sign * (b_dec @ tensors["W_enc"])
        tensors["b_mag"] = tensors["b_mag"] + sign * (b_dec @ (tensors["W_enc"] * tensors["r_mag"].exp()))
        return
    tensors["b_enc"] = tensors["b_enc"] + sign * (b_dec @ tensors["W_enc"])


def _config(source: str, **fields: Any) -> DictionaryConfig:
    try:
        return DictionaryConfig(**fields)
    except ConfigError as e:
        raise DataError(f"{source} describes a dictionary saekit cannot build: {e}") from None


def _int_field(d: dict, key: str, source: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DataError(f"{source} needs a positive integer {key!r}, got {value!r}.")
    return value


# ---------------------------------------------------------------------- SAELens


def load_saelens(folder: Path) -> torch.nn.Module:
    """A SAELens folder (``cfg.json`` + ``sae_weights.safetensors``), SAELens 6 or older configs."""
    cfg_file = folder / CFG_FILENAME
    raw = read_json(cfg_file, "SAELens config")
    if not isinstance(raw, dict):
        raise DataError(f"{cfg_file} must hold a JSON object, got {type(raw).__name__}.")
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    arch = raw.get("architecture")
    if arch is None:  # pre-6.0 configs: a top-k SAE says so through activation_fn
        act = raw.get("activation_fn") or raw.get("activation_fn_str")
        arch = "topk" if act == "topk" else "standard"
    if arch not in SAELENS_ARCHITECTURES:
        raise DataError(
            f"{cfg_file} has architecture {arch!r}, which saekit cannot load; expected one of "
            f"{', '.join(SAELENS_ARCHITECTURES)}."
        )
    kind, transcoder, skip = SAELENS_ARCHITECTURES[arch]
    norm = raw.get("normalize_activations", "none")
    if norm in (False, None):
        norm = "none"
    # SAELens's own load_from_disk applies no runtime op for these two (the scale lives outside
    # the folder), so the weights alone define the function.
    if norm not in ("none", "expected_average_only_in", True):
        raise DataError(
            f"{cfg_file} has normalize_activations={norm!r}, a per-token normalisation saekit "
            f"dictionaries do not apply; expected 'none'."
        )
    d_in = _int_field(raw, "d_in", str(cfg_file))
    d_sae = _int_field(raw, "d_sae", str(cfg_file))
    k = raw.get("k")
    if k is None and isinstance(raw.get("activation_fn_kwargs"), dict):
        k = raw["activation_fn_kwargs"].get("k")
    weights = folder / WEIGHTS_FILENAME
    tensors = read_tensors(weights)
    d_out = d_in
    if transcoder:  # older transcoder configs omit d_out; W_dec [d_sae, d_out] says it
        d_out = raw.get("d_out") or (tensors["W_dec"].shape[-1] if "W_dec" in tensors else d_in)
    cfg = _config(
        str(cfg_file),
        kind=kind,
        d_in=d_in,
        n_latents=d_sae,
        k=int(k) if KINDS[kind].uses_k and k is not None else None,
        d_out=d_out,
        transcoder=transcoder,
        skip=skip,
        hook_name=str(meta.get("hook_name") or raw.get("hook_name") or raw.get("hook_point") or ""),
        hook_name_out=str((meta.get("hook_name_out") or raw.get("hook_name_out") or "") if transcoder else ""),
        model_name=str(meta.get("model_name") or raw.get("model_name") or ""),
        variant=str(meta.get("saekit_variant") or ""),
    )
    scaling = tensors.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise DataError(f"{weights} has a finetuning scaling_factor ≠ 1, which saekit does not support.")
    if ("b_enc" in tensors or "b_gate" in tensors) and "W_enc" in tensors and "b_dec" in tensors and not transcoder:
        _center_input(tensors, bool(raw.get("apply_b_dec_to_input", True)), True)
    if KINDS[kind].uses_k and raw.get("rescale_acts_by_decoder_norm") and "W_dec" in tensors:
        # SAELens ranks pre·‖W_dec_i‖ and decodes z/‖W_dec_i‖: the same as scaling encoder
        # column i by ‖W_dec_i‖ and dividing decoder row i by it.
        norms = tensors["W_dec"].norm(dim=-1)
        tensors["W_enc"] = tensors["W_enc"] * norms
        tensors["b_enc"] = tensors["b_enc"] * norms
        tensors["W_dec"] = tensors["W_dec"] / norms[:, None]
    return build_dictionary(cfg, tensors, str(weights))


# ---------------------------------------------------------------------- sparsify


def load_sparsify(folder: Path) -> torch.nn.Module:
    """An EleutherAI sparsify folder: ``cfg.json`` + ``sae.safetensors``.

    sparsify stores the encoder as an nn.Linear (``encoder.weight [n, d_in]``, ``encoder.bias``),
    ``W_dec [n, d]``, ``b_dec [d]`` and optionally ``W_skip [d, d]``; it centres inputs on b_dec
    unless ``transcode`` is set, and uses ReLU then top-k.
    """
    cfg_file = folder / CFG_FILENAME
    raw = read_json(cfg_file, "sparsify config")
    if not isinstance(raw, dict):
        raise DataError(f"{cfg_file} must hold a JSON object, got {type(raw).__name__}.")
    if raw.get("activation", "topk") != "topk":
        raise DataError(
            f"{cfg_file} has activation {raw.get('activation')!r}; "
            "saekit loads sparsify top-k coders only (expected 'topk')."
        )
    d_in = _int_field(raw, "d_in", str(cfg_file))
    n = raw.get("num_latents") or d_in * int(raw.get("expansion_factor", 32))
    weights = folder / SPARSIFY_WEIGHTS
    st = read_tensors(weights)
    for key in ("encoder.weight", "encoder.bias", "W_dec", "b_dec"):
        if key not in st:
            raise DataError(
                f"{weights} is missing tensor {key}; "
                "a sparsify coder has encoder.weight, encoder.bias, W_dec and b_dec."
            )
    transcode = bool(raw.get("transcode", False))
    skip = "W_skip" in st or bool(raw.get("skip_connection", False))
    tensors = {
        "W_enc": st["encoder.weight"].T.contiguous(),
        "b_enc": st["encoder.bias"],
        "W_dec": st["W_dec"],
        "b_dec": st["b_dec"],
    }
    if skip:
        if "W_skip" not in st:
            raise DataError(f"{weights} is missing tensor W_skip, which skip_connection=true in {cfg_file} requires.")
        tensors["W_skip"] = st["W_skip"]
    transcoder = transcode or skip
    _center_input(tensors, not transcode, not transcoder)
    parent_cfg = folder.parent / "config.json"
    model_name = ""
    if parent_cfg.is_file():
        try:
            model_name = str(json.loads(parent_cfg.read_text()).get("model", ""))
        except (json.JSONDecodeError, AttributeError):
            model_name = ""
    cfg = _config(
        str(cfg_file),
        kind="topk",
        d_in=d_in,
        n_latents=int(n),
        k=raw.get("k", 32),
        d_out=d_in,
        transcoder=transcoder,
        skip=skip,
        multi_topk=bool(raw.get("multi_topk", False)),
        hook_name=folder.name,
        model_name=model_name,
    )
    return build_dictionary(cfg, tensors, str(weights))


# ---------------------------------------------------------------------- dictionary_learning


def load_dictionary_learning(folder: Path) -> torch.nn.Module:
    """A dictionary_learning (Marks et al.) folder: ``ae.pt`` + ``config.json``.

    Supported classes: AutoEncoder (ReLU), AutoEncoderTopK, BatchTopKSAE (its inference rule,
    a global threshold, becomes a JumpReLU with that threshold on every latent) and
    JumpReluAutoEncoder.
    """
    weights = folder / DL_WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights} does not exist; a dictionary_learning folder needs ae.pt.")
    st = load_torch_file(weights, "dictionary_learning weights")
    if not isinstance(st, dict):
        raise DataError(f"{weights} must hold a state dict, got {type(st).__name__}.")
    cfg_file = folder / "config.json"
    trainer = {}
    if cfg_file.is_file():
        conf = read_json(cfg_file, "dictionary_learning config")
        trainer = conf.get("trainer", {}) if isinstance(conf, dict) else {}
    cls = trainer.get("dict_class") or _guess_dl_class(st)
    if cls not in DL_CLASSES:
        raise DataError(f"{folder} holds a dictionary_learning {cls!r}; saekit loads {', '.join(DL_CLASSES)}.")

    def need(*keys: str) -> None:
        missing = [k for k in keys if k not in st]
        if missing:
            raise DataError(f"{weights} is missing tensor(s) {', '.join(missing)} for a {cls}.")

    layer = trainer.get("layer")
    hook = f"blocks.{layer}.hook_resid_post" if isinstance(layer, int) else str(trainer.get("submodule_name") or "")
    common = {"hook_name": hook, "model_name": str(trainer.get("lm_name") or "")}
    if cls == "JumpReluAutoEncoder":
        need("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
        tensors = {k: st[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
        # dictionary_learning's JumpReLU does not centre its input by default.
        _center_input(tensors, False, True)
        d_in, n = tensors["W_enc"].shape
        cfg = _config(str(weights), kind="jumprelu", d_in=d_in, n_latents=n, **common)
        return build_dictionary(cfg, tensors, str(weights))
    need("encoder.weight", "encoder.bias", "decoder.weight")
    tensors = {
        "W_enc": st["encoder.weight"].T.contiguous(),
        "b_enc": st["encoder.bias"],
        "W_dec": st["decoder.weight"].T.contiguous(),
    }
    n, d_in = st["encoder.weight"].shape
    if cls == "AutoEncoder":
        need("bias")
        tensors["b_dec"] = st["bias"]
        cfg = _config(str(weights), kind="relu", d_in=d_in, n_latents=n, **common)
    else:
        need("b_dec", "k")
        tensors["b_dec"] = st["b_dec"]
        k = int(st["k"])
        if cls == "AutoEncoderTopK":
            cfg = _config(str(weights), kind="topk", d_in=d_in, n_latents=n, k=k, **common)
        else:
            need("threshold")
            thr = float(st["threshold"])
            if thr < 0:
                raise DataError(
                    f"{weights} has threshold {thr} (never set during training); "
                    "a BatchTopKSAE needs a threshold ≥ 0 for inference."
                )
            tensors["threshold"] = torch.full((n,), thr, dtype=tensors["W_enc"].dtype)
            cfg = _config(str(weights), kind="jumprelu", d_in=d_in, n_latents=n, **common)
    return build_dictionary(cfg, tensors, str(weights))


def _guess_dl_class(st: dict) -> str:
    if "threshold" in st and "W_enc" in st:
        return "JumpReluAutoEncoder"
    if "bias" in st and "encoder.weight" in st:
        return "AutoEncoder"
    if "k" in st:
        return "BatchTopKSAE" if float(st.get("threshold", -1)) >= 0 else "AutoEncoderTopK"
    return "unknown"


# ---------------------------------------------------------------------- dispatch


def detect_format(folder: Path) -> str:
    """'saekit', 'saelens', 'sparsify' or 'dictionary_learning' for a dictionary folder."""
    if (folder / SAEKIT_FILENAME).is_file():
        return "saekit"
    if (folder / WEIGHTS_FILENAME).is_file():
        return "saelens"
    if (folder / SPARSIFY_WEIGHTS).is_file():
        return "sparsify"
    if (folder / DL_WEIGHTS).is_file():
        return "dictionary_learning"
    return ""


LOADERS = {
    "saekit": load_native,
    "saelens": load_saelens,
    "sparsify": load_sparsify,
    "dictionary_learning": load_dictionary_learning,
}


def load_folder(folder: str | Path) -> torch.nn.Module:
    """Load the dictionary in ``folder``, whichever supported library wrote it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; expected a dictionary folder or a Hub repo id (org/name).")
    fmt = detect_format(folder)
    if fmt:
        return LOADERS[fmt](folder)
    subs = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_dir() and detect_format(p))
    if len(subs) == 1:
        return LOADERS[detect_format(folder / subs[0])](folder / subs[0])
    if subs:
        shown = ", ".join(subs[:8]) + (", ..." if len(subs) > 8 else "")
        raise DataError(
            f"{folder} holds {len(subs)} dictionaries ({shown}); pass subfolder= (or the path of one of them) to pick one."
        )
    raise DataError(
        f"{folder} holds no dictionary; expected saekit.json or "
        f"cfg.json + {WEIGHTS_FILENAME} (saekit, SAELens), "
        f"cfg.json + {SPARSIFY_WEIGHTS} (sparsify) or {DL_WEIGHTS} + config.json (dictionary_learning)."
    )
