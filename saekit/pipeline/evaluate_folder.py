"""Evaluate one saved dictionary (what ``saekit eval`` runs): held-out text through its model, or
an activation cache; the metrics, with the hooks used, are saved as JSON.

    metrics, path = evaluate_folder("runs/sae", model="runs/models/baseline")
    print(metrics_table(metrics))
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from saekit.errors import ConfigError

# the figures ``metrics_table`` shows, in order (all are saved)
SHOWN = [
    ("l0", "L0"),
    ("fvu", "FVU"),
    ("explained_variance", "explained variance"),
    ("mse", "MSE"),
    ("cosine", "cos(x, x̂)"),
    ("shrinkage", "shrinkage ‖x̂‖/‖x‖"),
    ("dead_fraction", "dead fraction"),
    ("dense_fraction", "dense fraction (>10%)"),
    ("ce_loss_recovered", "CE loss recovered (zero abl.)"),
    ("ce_loss_recovered_mean_ablation", "CE loss recovered (mean abl.)"),
    ("kl_div", "KL(clean ‖ spliced)"),
    ("clean_loss", "clean loss"),
    ("spliced_loss", "spliced loss"),
    ("delta_loss", "Δ loss"),
]


def evaluate_folder(
    dictionary: str | Path,
    model: str | Path | None = None,
    acts: str | Path | None = None,
    hook: str | None = None,
    dataset: str | None = None,
    split: str = "validation",
    text_column: str = "text",
    seqs: int = 64,
    splice_seqs: int = 32,
    n_ctx: int | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
) -> tuple[dict[str, Any], Path]:
    """Core metrics of ``dictionary`` (a folder or Hub id) on held-out text (``split`` of ``dataset``,
    default the built-in corpus) through ``model`` (plus
    CE loss recovered and KL, spliced into it) or on the cache ``acts``; saved to ``out`` (default
    DICT/eval.json, or ./eval.json for a Hub id). Returns (metrics, the JSON file).

    ``hook`` overrides the dictionary's hook (``IN->OUT`` for a transcoder); a transcoder's
    output hook is otherwise the one it was trained on (``cfg.hook_name_out``)."""
    from saekit.evaluation.splice import split_hooks
    from saekit.fileutil import atomic_write_json
    from saekit.io import load
    from saekit.jsonsafe import json_safe

    if not model and not acts:
        raise ConfigError("saekit eval needs --model (a model folder) or --acts (an activation cache).")
    sae = load(dictionary, device=device)
    sae.eval()
    in_hook, out_hook = split_hooks(sae, hook, None)
    with torch.no_grad():
        if model:
            texts = (dataset, split, text_column)
            metrics = _through_model(sae, model, in_hook, out_hook, texts, seqs, splice_seqs, n_ctx, device)
        else:
            metrics = _on_cache(sae, acts, in_hook, out_hook)
    metrics = {**metrics, "hook_name": in_hook, "hook_name_out": out_hook}
    path = Path(out) if out else Path(dictionary) / "eval.json"
    if not out and not Path(dictionary).is_dir():
        path = Path("eval.json")
    atomic_write_json(path, json_safe(metrics))
    return metrics, path


def _through_model(
    sae: Any, model: str | Path, in_hook: str, out_hook: str | None, texts: tuple[str | None, str, str], seqs: int,
    splice_seqs: int, n_ctx: int | None, device: str,
) -> dict[str, Any]:
    from saekit.activations import default_n_ctx, read_activations
    from saekit.data import load_texts, pack_tokens
    from saekit.evaluation import evaluate
    from saekit.models import load_model

    handle = load_model(model, device=device)
    tokens = pack_tokens(load_texts(*texts), handle.tokenizer, default_n_ctx(handle, n_ctx), max_rows=seqs)
    acts = read_activations(handle, tokens, [h for h in (in_hook, out_hook) if h])
    rows = {h: a[:, 1:].reshape(-1, a.shape[-1]) for h, a in acts.items()}  # BOS left out
    source = (rows[in_hook], rows[out_hook]) if out_hook else rows[in_hook]
    return evaluate(
        sae, source, model=handle, tokens=tokens[:splice_seqs], hook_name=in_hook, out_hook_name=out_hook
    )


def _on_cache(sae: Any, acts: str | Path, in_hook: str, out_hook: str | None) -> dict[str, Any]:
    from saekit.activations import ActivationCache
    from saekit.evaluation import evaluate

    cache = ActivationCache(acts, [in_hook, out_hook] if out_hook else in_hook, prefetch=False)
    return evaluate(sae, cache)


def metrics_table(metrics: dict[str, Any]) -> str:
    """The headline figures of ``metrics``, one ``label  value`` line each."""
    width = max(len(label) for _, label in SHOWN)
    lines = []
    for key, label in SHOWN:
        if key in metrics:
            v = metrics[key]
            shown = f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else f"{v}"
            lines.append(f"{label:<{width}}  {shown}")
    return "\n".join(lines)
