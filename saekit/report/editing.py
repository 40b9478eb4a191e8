"""HTML pages of editing results: the page ``saekit edit ... --out DIR`` keeps up to date (every
``edit_<action>.json`` in DIR with its curve), and the editing section of the comparison report."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from saekit.fileutil import atomic_write_text, read_json

PAGE = "edit_report.html"
ACTIONS = ("localize", "ablate", "steer")
_ENV = Environment(
    loader=PackageLoader("saekit.report", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(r: dict, action: str) -> dict[str, Any]:
    """The numbers behind one action's curve, one row per point."""
    if action == "localize":
        rows = [[str(t["unit"]), _f(t["auroc"]), _f(t["t"], 1)] for t in r["top"]]
        return {"header": [r["kind"], "AUROC", "Welch t"], "rows": rows}
    if action == "ablate":
        keys = ["concept_drop", "prob_removed", "collateral", "selectivity"]
        rows = [[str(n)] + [_f(r[k][i]) for k in keys] for i, n in enumerate(r["n"])]
        return {"header": [f"top {r['kind']}s ablated", "concept drop (nats)", "prob. removed",
                           "collateral (nats)", "selectivity"], "rows": rows}  # fmt: skip
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
    html = _ENV.get_template("editing.html.j2").render(sections=sections)
    return atomic_write_text(out / PAGE, html)
