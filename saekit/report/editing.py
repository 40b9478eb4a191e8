"""HTML pages of editing results: the page ``saekit edit ... --out DIR`` keeps up to date (every
``edit_<action>.json`` in DIR with its curve), and the editing section of the comparison report."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from saekit.fileutil import atomic_write_text, read_json
from saekit.report.templating import environment, fmt

PAGE = "edit_report.html"
ACTIONS = ("localize", "ablate", "steer")
_f = fmt


def _table(r: dict, action: str) -> dict[str, Any]:
    """The numbers behind one action's curve, one row per point."""
    if action == "localize":
        rows = [[str(t["unit"]), _f(t["auroc"]), _f(t["t"], 1)] for t in r["top"]]
        return {"header": [r["kind"], "AUROC", "Welch t"], "rows": rows}
    if action == "ablate":
        keys = ["concept_drop", "prob_removed", "collateral", "selectivity"] + (["probe_accuracy"] if "probe_accuracy" in r else [])
        rows = [[str(n)] + [_f(r[k][i]) for k in keys] for i, n in enumerate(r["n"])]
        return {"header": [f"top {r['kind']}s ablated", "concept drop (nats)", "prob. removed",
                           "collateral (nats)", "selectivity", "probe accuracy"][: len(keys) + 1], "rows": rows}  # fmt: skip
    keys = ["target_logprob", "concept_logprob", "control_loss"]
    rows = [[_f(a, 2)] + [_f(r[k][i]) for k in keys] for i, a in enumerate(r["alpha"])]
    return {"header": ["α", "log P(target) in control", "concept log-prob", "control loss (nats)"], "rows": rows}


def _headline(r: dict, action: str) -> str:
    if action == "localize":
        return f"{len(r['ranking'])} {r['kind']}s ranked; the best separates concept from control at AUROC {_f(r['top'][0]['auroc'])}."
    if action == "ablate":
        return (f"units to remove half the concept probability: {_f(r.get('units_to_half'))}; "
                f"selectivity AUC {_f(r.get('selectivity_auc'))} nats ({r['mode']} ablation).")  # fmt: skip
    return f"steering efficiency (target log-prob gain within 0.1 nats of control loss): {_f(r.get('steering_efficiency'))} nats."


def write_edit_page(out: str | Path) -> Path:
    """Write OUT/edit_report.html from the ``edit_<action>.json`` and ``.png`` files in OUT (PNGs embedded)."""
    out = Path(out)
    sections = []
    for action in ACTIONS:
        js, png = out / f"edit_{action}.json", out / f"edit_{action}.png"
        if not js.is_file():
            continue
        r = read_json(js, f"edit {action} result")
        img = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii") if png.is_file() else None
        sections.append({
            "action": action, "concept": r.get("concept"), "hook": r.get("hook"), "kind": r.get("kind"),
            "headline": _headline(r, action), "plot": img, "table": _table(r, action),
        })  # fmt: skip
    html = environment().get_template("editing.html.j2").render(sections=sections)
    return atomic_write_text(out / PAGE, html)


def _ablation_plot(curves: dict[str, dict], colors: dict[str, str], title: str) -> str:
    import matplotlib.pyplot as plt

    from saekit.report.plots import to_data_uri

    fig, ax = plt.subplots(figsize=(5.6, 3.5))
    for model, c in curves.items():
        a, col = c["ablation"], colors.get(model, "#888")
        x = [max(n, 0.5) for n in a["n"]]  # n = 0 at 0.5 on the log axis
        ax.plot(x, a["concept_drop"], marker="o", color=col, label=f"{model}: concept drop")
        ax.plot(x, a["collateral"], marker="s", ls="--", color=col, label=f"{model}: collateral")
    ax.set_xscale("log")
    ax.set(xlabel="top latents zero-ablated (0 at 0.5)", ylabel="nats", title=title)
    ax.legend(fontsize=7)
    return to_data_uri(fig)


def _steering_plot(curves: dict[str, dict], colors: dict[str, str], title: str) -> str:
    import matplotlib.pyplot as plt

    from saekit.report.plots import to_data_uri

    fig, ax = plt.subplots(figsize=(5.6, 3.5))
    for model, c in curves.items():
        s = c["steering"]
        ax.plot(s["control_loss"], s["target_logprob"], marker="o", color=colors.get(model, "#888"), label=model)
        for a, x, y in zip(s["alpha"], s["control_loss"], s["target_logprob"]):
            ax.annotate(f"α={a:g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="control loss (nats; fluency)", ylabel="log P(concept continuation) in control text", title=title)
    ax.legend(fontsize=7)
    return to_data_uri(fig)


MEASURE_LABELS = {
    "units_to_half": "units to half (↓)",
    "selectivity_auc": "selectivity AUC (↑, nats)",
    "steering_efficiency": "steering efficiency (↑, nats)",
}
MEASURES = tuple(MEASURE_LABELS)


def _half(c: dict) -> str:
    """units_to_half of one curve set: "≥ n" when half the concept was not removed within the n tried."""
    v = c["values"]["units_to_half"]
    return _f(v) if c.get("units_to_half_reached", True) else f"≥ {v:g} (not reached)"


def _measure_cells(c: dict) -> list[str]:
    if "values" not in c:  # results.json from before the three measures
        return ["–"] * len(MEASURES)
    return [_half(c), _f(c["values"]["selectivity_auc"]), _f(c["values"]["steering_efficiency"])]


def _curve_rows(curves: dict[str, dict]) -> dict[str, Any]:
    """Per model (first dictionary seed): top unit, the three measures, the end of the ablation curve."""
    n_end = curves[next(iter(curves))]["ablation"]["n"][-1]
    rows = [
        [m, str(c["top_unit"]), *_measure_cells(c), _f(c["ablation"]["concept_drop"][-1]), _f(c["ablation"]["collateral"][-1])]
        for m, c in curves.items()
    ]  # fmt: skip
    header = ["model", "top unit", *MEASURE_LABELS.values(), f"concept drop @ n={n_end}", "collateral"]
    return {"header": header, "rows": rows}


def _verdict_text(rec: dict | None) -> str:
    if rec is None or rec.get("variant") is None:
        return "–"
    text = f"{_f(rec['variant'])} vs {_f(rec['baseline'])}"
    if rec.get("delta") is not None:
        text += f": Δ {_f(rec['delta'])}"
    if rec.get("ci95"):
        text += f" [{_f(rec['ci95'][0])}, {_f(rec['ci95'][1])}]"
    return f"{text}, {rec.get('verdict') or '–'}"


def _not_reached(results: dict, d: str, prefix: str, group: str) -> str:
    """'k/n': how many of the group's units_to_half values were not reached (dictionaries, or models for neurons)."""
    key = f"{prefix}units_to_half_reached"
    models = set((results.get("groups") or {}).get(group, []))
    if prefix.startswith("neuron"):
        pairs = [(k.rsplit("/", 1), a) for k, a in (results.get("model_axes") or {}).items()]
        flags = [a.get(key) for (m, dd), a in pairs if dd == d and m in models]
    else:
        flags = [r["axes"].get(key) for r in results.get("dictionaries", []) if r["dict"] == d and r["variant"] in models]
    flags = [f for f in flags if f is not None]
    return f"{sum(f is False for f in flags)}/{len(flags)}"


def _verdict_rows(results: dict, d: str, prefix: str) -> dict[str, Any] | None:
    """Per variant: the three measures' estimates, delta, 95 % interval and verdict (results["verdicts"]),
    and how many units_to_half values of the variant and of the baseline were not reached."""
    rows = [
        [v, *(_verdict_text(per_dict.get(d, {}).get(f"{prefix}{m}")) for m in MEASURES),
         f"{_not_reached(results, d, prefix, v)} vs {_not_reached(results, d, prefix, 'baseline')}"]
        for v, per_dict in (results.get("verdicts") or {}).items()
    ]  # fmt: skip
    rows = [r for r in rows if any(c != "–" for c in r[1:-1])]
    header = ["variant", *MEASURE_LABELS.values(), "units to half not reached (variant vs baseline)"]
    return {"header": header, "rows": rows} if rows else None


def comparison_section(results: dict[str, Any], colors: dict[str, str]) -> dict[str, Any] | None:
    """The comparison report's editing section: per dictionary config, the three measures side by side per
    variant (estimate vs baseline, delta, 95 % interval, verdict), for its latents and its layer's MLP
    neurons; the ablation curves (concept drop and collateral over n) and steering curves (concept
    probability against fluency over α) of the first dictionary seed of every model, with that seed's
    measures; None when the run measured no editability."""
    ed = results.get("editing")
    if not ed:
        return None
    blocks = []
    for d, curves in ed.get("curves", {}).items():
        neurons = (ed.get("neuron_curves") or {}).get(d)
        blocks.append({
            "dict": d,
            "verdicts": _verdict_rows(results, d, "editability_"),
            "neuron_verdicts": _verdict_rows(results, d, "neuron_editability_"),
            "ablation": _ablation_plot(curves, colors, f"{d}: ablating {ed['concept']}"),
            "steering": _steering_plot(curves, colors, f"{d}: steering towards {ed['concept']}"),
            "table": _curve_rows(curves),
            "neuron_hook": neurons and next(iter(neurons.values())).get("hook"),
            "neuron_table": _curve_rows(neurons) if neurons else None,
        })  # fmt: skip
    return {"concept": ed["concept"], "measure": ed["measure"], "seed": ed.get("seed"), "n_max": ed.get("n_max"), "blocks": blocks}
