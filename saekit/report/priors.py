"""Report section "Implied sparsity prior": which family each dictionary's activations follow.

From the ``priors`` record of each dictionary (``saekit.pipeline.priors``): a grouped bar chart of
the share of fitted latents per family (one bar per variant / dictionary, mean over seeds) and a
table with the dominant family and the penalty its −log density implies (L1 for Laplace,
log(1 + a²) for Cauchy). Rendered by the template partial ``_priors.html.j2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from saekit.evaluation.priors import FAMILIES, IMPLIED_PENALTY
from saekit.report.plots import plt, to_data_uri


def _mean_shares(results: dict) -> dict[tuple[str, str], dict[str, Any]]:
    """(variant, dictionary) -> mean share per family over seeds, and the latents fitted."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in results["dictionaries"]:
        if rec.get("priors"):
            groups.setdefault((rec["variant"], rec["dict"]), []).append(rec["priors"])
    return {
        key: {
            "share": {f: float(np.mean([p["share"][f] for p in fits])) for f in FAMILIES},
            "fitted": sum(p["fitted"] for p in fits),
        }
        for key, fits in groups.items()
    }


def share_plot(shares: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Grouped bars: x = prior family, one bar per variant / dictionary."""
    fams = list(FAMILIES)
    width = 0.8 / max(1, len(shares))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(fams) + 0.25 * len(shares)), 3.4))
    for i, ((v, d), s) in enumerate(shares.items()):
        xs = np.arange(len(fams)) + (i - (len(shares) - 1) / 2) * width
        ax.bar(xs, [s["share"][f] for f in fams], width, label=f"{v} / {d}")
    ax.set_xticks(np.arange(len(fams)), [f"{f}\n{IMPLIED_PENALTY[f][0].split('  ')[0]}" for f in fams], fontsize=8)
    ax.set_ylabel("share of fitted latents")
    ax.set_ylim(0, 1)
    ax.set_title("best-fitting prior of non-zero |activations| (BIC)")
    ax.legend(fontsize=7, ncol=2)
    return to_data_uri(fig)


def prior_section(results: dict) -> dict[str, Any] | None:
    """Plot and table for the template, or None when no dictionary has a prior fit."""
    shares = _mean_shares(results)
    if not shares:
        return None
    rows = []
    for (v, d), s in shares.items():
        dominant = max(s["share"], key=s["share"].get)
        formula, penalty = IMPLIED_PENALTY[dominant]
        rows.append([v, d, str(s["fitted"])] + [f"{s['share'][f]:.2f}" for f in FAMILIES]
                    + [dominant, formula, penalty or "–"])  # fmt: skip
    header = ["variant", "dictionary", "latents fitted"] + list(FAMILIES) + ["dominant", "implied penalty", "saekit penalty"]
    return {"plot": share_plot(shares), "table": {"header": header, "rows": rows, "left": 2}}
