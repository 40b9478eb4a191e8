"""The work behind `saekit edit localize|ablate|steer`: load, build the concept set, compute, write
``edit_<action>.json`` and ``edit_<action>.png`` in the output folder, and (re)write its
``edit_report.html`` page with the curves of every action run there."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from saekit.editing import plots
from saekit.editing.ablate import ablation_curve, default_ns
from saekit.editing.concept_spec import concept_from_spec
from saekit.editing.editability import selectivity_auc, steering_efficiency, units_to_half
from saekit.editing.localise import localise
from saekit.editing.steer import steering_curve
from saekit.editing.units import make_units
from saekit.errors import ConfigError
from saekit.fileutil import atomic_write_json

ACTIONS = ("localize", "ablate", "steer")


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def run_edit(
    action: str,
    model: str,
    concept: str,
    out: str | Path,
    *,
    control: str | None = None,
    dictionary: str | None = None,
    hook: str | None = None,
    n_ctx: int = 64,
    max_texts: int = 200,
    split: str = "validation",
    top: int = 10,
    n_max: int = 32,
    mode: str = "zero",
    alphas: list[float] | None = None,
    direction: str = "top",
    overwrite: bool = False,
    device: str = "cpu",
    probe: bool = False,
) -> dict[str, Any]:
    """Run one editing action and write its JSON and PNG; returns the result (with "json" and "png" paths)."""
    if action not in ACTIONS:
        raise ConfigError(f"edit action {action!r} is not known; expected one of {', '.join(ACTIONS)}.")
    out = Path(out)
    json_path, png_path = out / f"edit_{action}.json", out / f"edit_{action}.png"
    if not overwrite and (json_path.exists() or png_path.exists()):
        raise ConfigError(f"{json_path} already exists; pass --overwrite to replace it or choose another --out.")
    from saekit.io import load
    from saekit.models import load_model

    handle = load_model(model, device=device)
    sae = load(dictionary, device=device) if dictionary else None
    units = make_units(handle, hook, sae)
    cs = concept_from_spec(concept, handle.tokenizer, n_ctx, control, split, max_texts)
    found = localise(units, cs, top=top, contexts=3 if action == "localize" else 0)
    if action == "localize":
        result = found
        plots.plot_localisation(found, png_path)
    elif action == "ablate":
        result = ablation_curve(units, cs, found["ranking"], default_ns(min(n_max, len(found["ranking"]))), mode)
        result.update(units_to_half=units_to_half(result), selectivity_auc=selectivity_auc(result))
        if probe:  # the concept effect read by a probe (saekit.editing.probe_effect)
            from saekit.editing.probe_effect import probe_ablation_curve

            p = probe_ablation_curve(units, cs, found["ranking"], result["n"], mode)
            result.update(probe_accuracy=p["probe_accuracy"], probe_drop=p["probe_drop"])
        plots.plot_ablation(result, png_path)
    else:
        chosen: Any = "mean_difference" if direction == "mean_difference" else (
            found["ranking"][0] if direction == "top" else int(direction)
        )
        result = steering_curve(units, cs, chosen, alphas)
        result["steering_efficiency"] = steering_efficiency(result) if 0.0 in result["alpha"] else None
        plots.plot_steering(result, png_path)
    atomic_write_json(json_path, _clean(result))
    from saekit.report.editing import write_edit_page

    page = write_edit_page(out)
    return {**result, "json": str(json_path), "png": str(png_path), "page": str(page)}
