"""The model card (README.md with YAML metadata) written when publishing dictionaries."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCardData

# Metrics listed first in the table, in this order; any other numeric metric follows, sorted.
_METRIC_ORDER = ("fvu", "mse", "l0", "dead_fraction", "ce_loss_recovered", "kl_div")
# Training-log bookkeeping that the last metrics record carries but that says nothing of quality.
_NOT_METRICS = {"step", "tokens", "tokens_per_s", "lr", "loss", "time", "elapsed_s"}


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _row_info(rel: str, meta: dict, cfg: dict) -> dict[str, Any]:
    d = meta.get("dictionary", {}) if isinstance(meta.get("dictionary"), dict) else {}
    md = cfg.get("metadata", {}) if isinstance(cfg.get("metadata"), dict) else {}
    model = meta.get("model", {}) if isinstance(meta.get("model"), dict) else {}
    kind = d.get("kind") or cfg.get("architecture", "")
    if d.get("skip"):
        kind = f"{kind} skip transcoder"
    elif d.get("transcoder"):
        kind = f"{kind} transcoder"
    return {
        "path": rel or ".",
        "kind": kind,
        "hook": d.get("hook_name") or md.get("hook_name") or cfg.get("hook_name") or "",
        "d_in": d.get("d_in", cfg.get("d_in")),
        "n_latents": d.get("n_latents", cfg.get("d_sae")),
        "k": d.get("k", cfg.get("k")),
        "model": d.get("model_name") or model.get("name") or md.get("model_name") or "",
        "variant": d.get("variant") or model.get("variant") or md.get("saekit_variant") or "",
        "metrics": {
            k: v
            for k, v in (meta.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_METRICS
        },
        "saelens_ok": not (d.get("kind") == "topk" and d.get("transcoder")),
    }


def model_card(repo_id: str, dictionaries: list[tuple[str, dict, dict]]) -> str:
    """README.md text for ``repo_id`` holding ``dictionaries`` = [(subfolder, saekit.json, cfg.json)]."""
    rows = [_row_info(rel, meta, cfg) for rel, meta, cfg in dictionaries]
    models = sorted({r["model"] for r in rows if r["model"]})
    variants = sorted({r["variant"] for r in rows if r["variant"]})
    hooks = sorted({r["hook"] for r in rows if r["hook"]})
    kinds = sorted({str(r["kind"]) for r in rows if r["kind"]})
    tags = ["saekit", "sparse-autoencoder", "sae", "interpretability", "saelens"]
    if any(r["kind"] and "transcoder" in str(r["kind"]) for r in rows) or any(
        (meta.get("dictionary") or {}).get("transcoder") for _, meta, _ in dictionaries
    ):
        tags.append("transcoder")
    data: dict[str, Any] = {"library_name": "saekit", "tags": tags}
    # The Hub checks base_model against existing repos, so only Hub-style ids go there.
    hub_models = [m for m in models if "/" in m]
    if hub_models:
        data["base_model"] = hub_models[0] if len(hub_models) == 1 else hub_models
    for key, values in (("model_name", models), ("model_variant", variants)):
        if values:
            data[key] = values[0] if len(values) == 1 else values
    if hooks:
        data["hookpoints"] = hooks
    data["architectures"] = kinds
    yaml = ModelCardData(**data).to_yaml()

    metric_names = [m for m in _METRIC_ORDER if any(m in r["metrics"] for r in rows)]
    metric_names += sorted({m for r in rows for m in r["metrics"]} - set(metric_names))
    header = ["subfolder", "kind", "hookpoint", "d_in", "n_latents", "k", "variant", *metric_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            f"`{r['path']}`",
            r["kind"],
            f"`{r['hook']}`" if r["hook"] else "",
            r["d_in"],
            r["n_latents"],
        ]
        cells += [r["k"], r["variant"], *(r["metrics"].get(m) for m in metric_names)]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    table = "\n".join(lines)
    first = rows[0]["path"] if rows else "."
    sub = "" if first == "." else f', subfolder="{first}"'
    sl_path = "path" if first == "." else f'f"{{path}}/{first}"'
    caveat = ""
    if not all(r["saelens_ok"] for r in rows):
        caveat = "\nTop-k transcoders have no SAELens class; load those with saekit (or export them to sparsify).\n"
    model_line = ", ".join(models) if models else "(not recorded)"
    variant_line = ", ".join(variants) if variants else "(not recorded)"
    return f"""---
{yaml}
---

# Sparse dictionaries for {model_line}

{len(rows)} sparse dictionar{"y" if len(rows) == 1 else "ies"} trained with saekit.
Model variant: {variant_line}.
Each subfolder is a SAELens-compatible folder (`cfg.json`, `sae_weights.safetensors`,
`sparsity.safetensors`) plus `saekit.json` (full training config, metrics, versions).
Activation normalisation is folded into the weights: the dictionaries work on raw activations.

## Dictionaries

{table}

## Load with saekit

```python
import saekit

sae = saekit.load("{repo_id}"{sub})
z = sae.encode(x)        # x: [batch, d_in] activations at the hookpoint
x_hat = sae.decode(z)
```

## Load with SAELens

```python
from huggingface_hub import snapshot_download
from sae_lens import SAE

path = snapshot_download("{repo_id}")
sae = SAE.load_from_disk({sl_path})
```
{caveat}"""
