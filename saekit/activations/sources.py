"""Activation sources named by a spec: the ``[source]`` table of a training config, or the
``--cache`` / ``--model --hookpoint`` / ``--activations`` flags of ``saekit train``.

    source = build_source({"cache": "runs/cache"}, seed=0, device="cpu")
    source = build_source({"model": "runs/models/baseline", "hookpoint": "blocks.0.hook_resid_post"}, 0, "cpu")

A spec names exactly one of ``cache`` (a folder written by ``saekit cache``), ``model`` (a live
stream over the built-in training corpus; needs ``hookpoint``, and ``hookpoint_out`` for a
transcoder) or ``activations`` (a safetensors file with ``x`` [N, d_in] and optional ``y``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.errors import ConfigError, DataError


def build_source(
    spec: dict[str, Any],
    seed: int,
    device: str,
    part: tuple[int, int] | None = None,
    total_tokens: int | None = None,
) -> Any:
    """The activation source a spec names; ``part=(rank, world)`` keeps only this rank's
    disjoint part (data-parallel training with local data); ``total_tokens`` sizes a live
    stream's tokenization and buffer to the run."""
    given = [k for k in ("cache", "model", "activations") if spec.get(k)]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one activation source: --cache DIR, --model DIR --hookpoint H, or --activations FILE."
        )
    hp = spec.get("hookpoint")
    hp_out = spec.get("hookpoint_out")
    hook = [hp, hp_out] if hp_out else hp
    if spec.get("activations"):
        return _file_source(Path(spec["activations"]), part)
    if spec.get("cache"):
        from saekit.activations.cache import ActivationCache

        if part is not None:
            raise ConfigError(
                "--dist-data local cannot split a --cache; use --dist-data global (each rank reads "
                "the global batch and keeps its slice)."
            )
        return ActivationCache(spec["cache"], hook, seed=seed, device="cpu", progress=False)
    if not hp:
        raise ConfigError("--model needs --hookpoint (and --hookpoint-out for a transcoder).")
    from saekit.activations.stream import ActivationStream
    from saekit.models import load_model
    from saekit.progress import status

    status(f"loading model {spec['model']} and tokenizing the text...")
    handle = load_model(spec["model"], device=device)
    tokens, doc_ids = live_tokens(spec, handle, total_tokens)
    if part is not None:  # this rank's sequences only: each rank runs the model on its own tokens
        tokens, doc_ids = tokens[part[0] :: part[1]], doc_ids[part[0] :: part[1]]
    buffer = 1 << 16 if total_tokens is None else max(1024, min(1 << 16, total_tokens))
    return ActivationStream(handle, tokens, hook, doc_ids=doc_ids, seed=seed, buffer_tokens=buffer)


def _file_source(file: Path, part: tuple[int, int] | None) -> Any:
    """Tensor x (or the pair (x, y)) of a safetensors file; rows ``rank::world`` with ``part``."""
    from safetensors.torch import load_file

    if not file.is_file():
        raise DataError(f"activations file {file} does not exist.")
    try:
        tensors = load_file(str(file))
    except Exception as e:
        raise DataError(f"activations file {file} is not a readable safetensors file ({e}).") from None
    if "x" not in tensors:
        raise DataError(f"activations file {file} has no tensor 'x'; expected x [N, d_in] (and y [N, d_out]).")
    x = tensors["x"].float()
    y = tensors["y"].float() if "y" in tensors else None
    if part is not None:
        x, y = x[part[0] :: part[1]], (y[part[0] :: part[1]] if y is not None else None)
    return (x, y) if y is not None else x


def live_tokens(spec: dict[str, Any], handle: Any, total_tokens: int | None) -> tuple[Any, Any]:
    """(tokens, doc_ids) of the source's dataset (default: the built-in training corpus) packed for
    a live model source: only as many rows as the run needs (a stream cycles over its tokens if it
    runs out)."""
    from saekit.data import load_texts, pack_tokens_with_docs

    n_ctx = spec.get("n_ctx") or min(int(getattr(getattr(handle.model, "cfg", None), "n_ctx", 128)), 1024)
    rows = None if total_tokens is None else total_tokens // max(1, n_ctx - 1) + 2
    docs = load_texts(spec.get("dataset"), spec.get("split") or "train", spec.get("text_column") or "text")
    return pack_tokens_with_docs(docs, handle.tokenizer, n_ctx, bos=True, max_rows=rows)


def source_widths(source: Any) -> tuple[int, int, bool]:
    """(d_in, d_out, paired) of a source built by ``build_source``."""
    if isinstance(source, tuple):
        return source[0].shape[1], source[1].shape[1], True
    if hasattr(source, "shape"):
        return source.shape[1], source.shape[1], False
    return source.d_in, source.d_out, bool(getattr(source, "paired", False))


def source_origin(spec: dict[str, Any], source: Any) -> dict[str, str]:
    """The hookpoints (input, and a transcoder's output), model and variant a source reads, for the
    dictionaries' configs: a cache names its own, so that ``saekit eval --model`` can splice a
    dictionary trained on it."""
    own = list(getattr(source, "hookpoints", None) or [])
    hookpoint = spec.get("hookpoint") or (own[0] if own else "")
    hookpoint_out = spec.get("hookpoint_out") or (own[1] if len(own) == 2 else "")
    origin = (getattr(source, "manifest", None) or {}).get("model") or {}
    model = origin.get("path") or origin.get("name") or spec.get("model") or ""
    return {
        "hook_name": hookpoint or "",
        "hook_name_out": hookpoint_out or "",
        "model_name": str(model),
        "variant": str(origin.get("variant") or ""),
    }
