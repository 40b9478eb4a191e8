"""Explainability against abstractness, latent by latent, for the random control and the baseline.

Reads the ``per_latent.json`` files that ``benchmarks/control_verdict.py --per-latent`` writes (one per
model family) and prints, per family, hookpoint and group (baseline / random): the medians of both
axes, the rank correlation of a latent's n-gram F1 with its abstractness, and the median F1 of the
latents in each abstractness bin. Draws the binned medians (one panel per family) into ``--plot``.

If both groups' latents lie on one F1-against-abstractness curve, a random control cannot be below the
baseline on both medians: moving its latents towards the token (lower abstractness) moves them up the
curve (higher F1). The question of issue 14's control test (docs/comparing.md, "Random control: which
definition").

    PYTHONPATH=. python benchmarks/control_axes_per_latent.py "learned ×1=/tmp/ctl/std1" \\
        "rotary ×0.1=/tmp/ctl/rot01" --plot docs/random_control_axes.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

BINS = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0001])


def load(folder: Path, width: int | None, k: int | None) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """(hook, group) -> arrays of abstractness and F1 of every explained latent (abstractness defined)."""
    rows = json.loads((folder / "per_latent.json").read_text())
    out: dict[tuple[str, str], dict[str, list]] = {}
    for r in rows:
        if r["abstractness"] is None or (k is not None and r["k"] != k):
            continue
        if width is not None and r.get("width", width) != width:  # files without "width": one width
            continue
        group = "baseline" if "baseline" in r["model"] else "random"
        cell = out.setdefault((r["hook"], group), {"abstractness": [], "f1": []})
        cell["abstractness"].append(r["abstractness"])
        cell["f1"].append(r["f1"])
    return {key: {a: np.asarray(v) for a, v in cell.items()} for key, cell in out.items()}


def binned(ab: np.ndarray, f1: np.ndarray) -> list[tuple[float, float, int]]:
    """(bin centre, median F1, n latents) per abstractness bin with at least 5 latents."""
    out = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        m = (ab >= lo) & (ab < hi)
        if m.sum() >= 5:
            out.append(((lo + min(hi, 1.0)) / 2, float(np.median(f1[m])), int(m.sum())))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("families", nargs="+", help="LABEL=FOLDER (a control_verdict.py --per-latent output folder)")
    p.add_argument("--k", type=int, default=None, help="only the dictionaries with this k")
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    panels = []
    print("| family | hookpoint | group | latents | median abstractness | median F1 | Spearman(F1, abstractness) "
          "| median F1 per abstractness bin (bin: F1, n) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.families:
        label, folder = spec.split("=", 1)
        cells = load(Path(folder), None, args.k)
        panels.append((label, cells))
        for (hook, group), c in sorted(cells.items()):
            rho = spearmanr(c["abstractness"], c["f1"]).statistic
            bins = ", ".join(f"{b:.2f}: {f:.2f} ({n})" for b, f, n in binned(c["abstractness"], c["f1"]))
            print(f"| {label} | `{hook.split('hook_')[-1]}` | {group} | {len(c['f1'])} | {np.median(c['abstractness']):.3f} "
                  f"| {np.median(c['f1']):.3f} | {rho:+.2f} | {bins} |")  # fmt: skip
    if args.plot:
        plot(panels, args.plot)
        print(f"wrote {args.plot}")


def plot(panels: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), sharey=True, squeeze=False)
    colours = {"baseline": "tab:blue", "random": "tab:red"}
    for ax, (label, cells) in zip(axs[0], panels):
        for (hook, group), c in sorted(cells.items()):
            style = "-" if hook.endswith("resid_post") else "--"
            pts = binned(c["abstractness"], c["f1"])
            ax.plot([b for b, _, _ in pts], [f for _, f, _ in pts], style, marker="o", ms=3, color=colours[group],
                    label=f"{group}, {hook.split('hook_')[-1]}")  # fmt: skip
            ax.plot(np.median(c["abstractness"]), np.median(c["f1"]), marker="*", ms=13, color=colours[group],
                    markeredgecolor="black")  # fmt: skip
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("latent's abstractness (1 − R² from token id)")
        ax.set_xlim(0, 1)
    axs[0][0].set_ylabel("median n-gram F1 of latents in the bin")
    axs[0][0].legend(fontsize=7)
    fig.suptitle("Random control vs baseline, latent by latent (stars: the two axes' medians)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
