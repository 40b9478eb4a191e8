"""Matplotlib PNGs of the editing results: the localisation ranking, ablation and steering curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402

from saekit.fileutil import atomic_write_bytes  # noqa: E402


def _save(fig: Any, path: str | Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_localisation(result: dict, path: str | Path) -> Path:
    """AUROC of every unit, sorted, with the top units labelled."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ranked = [result["auroc"][u] for u in result["ranking"]]
    ax.plot(range(1, len(ranked) + 1), ranked, marker=".", lw=1)
    for i, top in enumerate(result["top"][:5]):
        ax.annotate(f"{result['kind']} {top['unit']}", (i + 1, top["auroc"]), fontsize=7, xytext=(4, -4 - 8 * i),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="rank", ylabel="AUROC (concept vs control)", title=f"{result['concept']} at {result['hook']}")
    ax.axhline(0.5, color="grey", lw=0.5, ls="--")
    return _save(fig, path)


def plot_ablation(curve: dict, path: str | Path) -> Path:
    """Concept drop and collateral (nats) against the number of units ablated."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [max(n, 0.5) for n in curve["n"]]  # n = 0 shown at 0.5 on the log axis
    ax.plot(x, curve["concept_drop"], marker="o", label="concept drop (nats)")
    ax.plot(x, curve["collateral"], marker="s", label="collateral: control loss rise (nats)")
    ax.plot(x, curve["selectivity"], ls="--", label="selectivity")
    ax.set_xscale("log")
    ax.set(xlabel=f"top {curve['kind']}s {curve['mode']}-ablated (0 at 0.5)", ylabel="nats",
           title=f"{curve['concept']} at {curve['hook']}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_steering(curve: dict, path: str | Path) -> Path:
    """Target log-probability against control loss as α grows (fluency trade-off)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(curve["control_loss"], curve["target_logprob"], marker="o")
    for a, x, y in zip(curve["alpha"], curve["control_loss"], curve["target_logprob"]):
        ax.annotate(f"α={a:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="control loss (nats)", ylabel="log P(concept continuation) in control text",
           title=f"steering with {curve['direction']} at {curve['hook']}")
    return _save(fig, path)
