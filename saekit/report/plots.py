"""Matplotlib figures for the comparison report, returned as PNG data URIs (self-contained HTML)."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MARKERS = "osD^v<>pX*"


def variant_colors(variants: list[str]) -> dict[str, str]:
    cmap = plt.get_cmap("tab10")
    return {v: matplotlib.colors.to_hex(cmap(i % 10)) for i, v in enumerate(variants)}


def variant_order(results: dict) -> list[str]:
    """Variants in the order they were given (results.json stores its keys sorted)."""
    return list(results["settings"].get("variant_order") or results["variants"])


def dict_order(results: dict) -> list[str]:
    return list(results["settings"].get("dict_order") or results["settings"]["dictionaries"])


def to_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def scatter_l0(results: dict, key: str, ylabel: str) -> str:
    """L0 against a metric: one point per dictionary and seed, colour = variant, marker = dictionary."""
    variants = variant_order(results)
    colors = variant_colors(variants)
    names = dict_order(results)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for rec in results["dictionaries"]:
        m = rec["metrics"]
        ax.scatter(
            _num(m.get("l0")),
            _num(m.get(key)),
            color=colors[rec["variant"]],
            marker=MARKERS[names.index(rec["dict"]) % len(MARKERS)],
            s=46,
            edgecolor="black",
            linewidth=0.4,
        )
    for v in variants:
        ax.scatter([], [], color=colors[v], label=v)
    for i, n in enumerate(names):
        ax.scatter([], [], color="white", edgecolor="black", marker=MARKERS[i % len(MARKERS)], label=n)
    ax.set_xlabel("L0 (active latents per token)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return to_data_uri(fig)


def density_histograms(results: dict, dict_name: str) -> str:
    """log10 firing frequency of latents, first seed of each variant."""
    variants = variant_order(results)
    colors = variant_colors(variants)
    seed = results["settings"]["seeds"][0]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for rec in results["dictionaries"]:
        if rec["dict"] != dict_name or rec["seed"] != seed:
            continue
        h = rec["metrics"]["density_log10_hist"]
        edges = np.array(h["edges"])
        ax.stairs(h["counts"], edges, color=colors[rec["variant"]], label=rec["variant"], linewidth=1.6)
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("latents")
    ax.set_title(f"{dict_name}: feature density", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return to_data_uri(fig)


def score_distributions(results: dict, dict_name: str, key: str, xlabel: str, bins: np.ndarray) -> str:
    """Histogram per variant of a per-latent auto-interp score (all seeds pooled)."""
    variants = variant_order(results)
    colors = variant_colors(variants)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for v in variants:
        vals = [
            x
            for rec in results["dictionaries"]
            if rec["dict"] == dict_name and rec["variant"] == v
            for x in rec["autointerp"].get(key, [])
            if x is not None
        ]
        if vals:
            ax.hist(
                vals,
                bins=bins,
                histtype="step",
                linewidth=1.6,
                color=colors[v],
                label=f"{v} (n={len(vals)})",
                density=True,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density of latents")
    ax.set_title(dict_name, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return to_data_uri(fig)


def matching_curves(results: dict, dict_name: str) -> str:
    """Shared fraction vs cosine threshold: cross-variant pairs (solid), seed noise floor (dashed), chance."""
    variants = variant_order(results)
    colors = variant_colors(variants)
    m = results["matching"][dict_name]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    t = m["chance"]["thresholds"]
    for v in [v for v in variants if v in m["noise_floor"]]:  # one model per group
        r = m["noise_floor"][v]
        ax.plot(t, r["decoder"]["shared_fraction"], "--", color=colors[v], label=f"{v}: seed vs seed")
    first = variants[0]  # cross pairs with the first variant (the baseline); the table has every pair
    for r in m["cross"]:
        if first not in (r["a"], r["b"]):
            continue
        ax.plot(
            t,
            r["decoder"]["shared_fraction"],
            "-",
            color=colors[r["b"]],
            linewidth=2,
            label=f"{r['a']} vs {r['b']}",
            marker=".",
            markeredgecolor=colors[r["a"]],
        )
    ax.plot(t, m["chance"]["shared_fraction"], ":", color="grey", label="chance (random dictionaries)")
    ax.set_xlabel("decoder cosine threshold (Hungarian one-to-one)")
    ax.set_ylabel("shared fraction of latents")
    ax.set_title(dict_name, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower left")
    return to_data_uri(fig)


def lm_loss_cost(results: dict) -> str:
    """Held-out LM loss of each variant (bars) and its difference to the baseline."""
    variants = variant_order(results)
    colors = variant_colors(variants)
    losses = {}
    for v in variants:
        vals = [rec["metrics"].get("clean_loss") for rec in results["dictionaries"] if rec["variant"] == v]
        vals = [x for x in vals if x is not None]
        losses[v] = vals[0] if vals else float("nan")
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    ax.bar(range(len(variants)), [losses[v] for v in variants], color=[colors[v] for v in variants])
    base = losses.get("baseline")
    for i, v in enumerate(variants):
        label = f"{losses[v]:.3f}" + (f"\n({losses[v] - base:+.3f})" if base is not None and v != "baseline" else "")
        ax.text(i, losses[v], label, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(variants)), variants, fontsize=8)
    ax.set_ylabel("held-out LM loss (nats/token)")
    ax.set_ylim(0, max([x for x in losses.values() if x == x] + [1]) * 1.2)
    ax.grid(alpha=0.3, axis="y")
    return to_data_uri(fig)


def normalised_interval(rec: dict) -> tuple[float, float] | None:
    """The 95 % interval of delta mapped onto the normalised scale: 1 + ci / (baseline - random)."""
    b, r, ci = rec.get("baseline"), rec.get("random"), rec.get("ci95")
    if rec.get("normalised") is None or ci is None or b is None or r is None or b == r:
        return None
    lo, hi = sorted(1 + c / (b - r) for c in ci)
    return lo, hi


VERDICT_COLORS = {"better": "#1a7f37", "worse": "#c0392b"}


def forest_plot(verdicts: dict, axes: list[str]) -> str:
    """Normalised effect (0 = random control, 1 = baseline) with its 95 % interval, per variant × dictionary × axis."""
    rows = [
        (f"{v} / {d} / {a}", rec)
        for v, per_dict in verdicts.items()
        for d, per_axis in per_dict.items()
        for a in axes
        if (rec := per_axis.get(a)) is not None and rec.get("normalised") is not None
    ]
    fig, ax = plt.subplots(figsize=(6.4, 0.28 * max(len(rows), 4) + 1.0))
    for i, (_, rec) in enumerate(rows):
        color = VERDICT_COLORS.get(rec.get("verdict"), "#555555")
        iv = normalised_interval(rec)
        if iv is not None:
            ax.plot(iv, [i, i], color=color, linewidth=1.6)
        ax.plot([rec["normalised"]], [i], "o", color=color, markersize=5)
    ax.axvline(0, color="grey", linestyle=":", label="random control")
    ax.axvline(1, color="black", linestyle="--", linewidth=0.8, label="baseline")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("normalised effect (variant − random) / (baseline − random)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    if not rows:
        ax.text(0.5, 0.5, "no normalised effect (no random control)", ha="center", transform=ax.transAxes)
    return to_data_uri(fig)
