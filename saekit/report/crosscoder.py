"""The crosscoder report: one self-contained HTML page from a Jinja2 template and matplotlib plots.

``write_crosscoder_report(results, out)`` takes the dict ``saekit.pipeline.crosscoder`` builds
(sharing, latent scaling, per-source metrics, example contexts, and with several seeds every
seed's figures and their intervals) and writes ``out/report.html``. ``comparison_section`` gives
the comparison report its crosscoder section (``templates/crosscoder_section.html.j2``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from saekit.fileutil import atomic_write_text
from saekit.report.plots import plt, to_data_uri
from saekit.report.templating import environment


def relative_norm_histogram(
    share: np.ndarray, classes: list[str], names: list[str], per_seed: dict[str, list[float]] | None = None
) -> str:
    """Histogram of each alive latent's norm share in the last source (relative norm for pairs).

    With ``per_seed`` ({seed: relative norms of its alive latents}) every seed is one outlined
    histogram, so the spread between seeds shows beside the shape.
    """
    alive = np.array([c != "dead" for c in classes], dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.linspace(0, 1, 41)
    if per_seed and len(per_seed) > 1:
        for seed, values in per_seed.items():
            ax.hist(values, bins=bins, histtype="step", lw=1.4, label=f"seed {seed}")
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.hist(share[alive, -1] if alive.any() else [], bins=bins, color="#4477aa")
    label = f"‖d_{names[-1]}‖ / Σ‖d‖" if len(names) > 2 else f"‖d_{names[1]}‖ / (‖d_{names[0]}‖ + ‖d_{names[1]}‖)"
    ax.set_xlabel(f"relative decoder norm {label}")
    ax.set_ylabel("alive latents")
    return to_data_uri(fig)


def scaling_scatter(scaling: dict[str, Any]) -> str | None:
    """ν_ε against ν_r of every exclusive latent (worst other source), flagged ones in red."""
    if not scaling["latents"]:
        return None
    nu_e = np.array([max((v for v in row if v is not None), default=0.0) for row in scaling["nu_error"]])
    nu_r = np.array([max((v for v in row if v is not None), default=0.0) for row in scaling["nu_recon"]])
    flagged = np.array(scaling["flagged"], dtype=bool)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(nu_e[~flagged], nu_r[~flagged], s=12, color="#4477aa", label="exclusive")
    ax.scatter(nu_e[flagged], nu_r[flagged], s=16, color="#cc3311", label="flagged")
    t = scaling["nu_threshold"]
    ax.axvline(t, color="#999", lw=0.8, ls="--")
    ax.axhline(t, color="#999", lw=0.8, ls="--")
    ax.set_xlabel("ν_ε (other model's error)")
    ax.set_ylabel("ν_r (other model's reconstruction)")
    ax.legend(frameon=False)
    return to_data_uri(fig)


def write_crosscoder_report(results: dict[str, Any], out: str | Path) -> Path:
    """Render ``results`` to ``out/report.html`` (written atomically) and return the path."""
    env = environment(strict=True)
    sharing, scaling = results["sharing"], results["latent_scaling"]
    per_seed = {s: r["relative_norm"] for s, r in results.get("per_seed", {}).items()}
    plots = {
        "relative_norm": relative_norm_histogram(
            np.array(sharing["share"]), sharing["classes"], sharing["names"], per_seed
        ),
        "scaling": scaling_scatter(scaling),
    }
    html = env.get_template("crosscoder.html.j2").render(
        names=sharing["names"],
        cfg=results["dictionary"],
        thresholds=sharing["thresholds"],
        counts=counts_table(results),
        metrics=metrics_table(results),
        seeds=[str(s) for s in results.get("seeds", [])],
        plots=plots,
        nu_threshold=scaling["nu_threshold"],
        n_flagged=sum(scaling["flagged"]),
        n_scaled=len(scaling["latents"]),
        examples=results["examples"],
        n_eval_tokens=results["n_eval_tokens"],
    )
    path = Path(out) / "report.html"
    atomic_write_text(path, html)
    return path


def interval(stat: dict[str, Any] | None, digits: int = 1) -> str:
    """'mean [lo, hi]' of a ``mean_t_interval`` dict ('mean' alone with one seed; '–' when missing)."""
    if not stat or stat.get("mean") is None:
        return "–"
    text = f"{stat['mean']:.{digits}f}"
    if stat.get("lo") is not None:
        text += f" [{stat['lo']:.{digits}f}, {stat['hi']:.{digits}f}]"
    return text


def counts_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class: the mean count with its interval over seeds and every seed's count."""
    over = results.get("over_seeds")
    counts = results["sharing"]["counts"]
    if not over:
        return [{"cls": c, "interval": str(n), "values": [n]} for c, n in counts.items()]
    return [
        {"cls": c, "interval": interval(stat), "values": [int(v) for v in stat["values"]]}
        for c, stat in over["counts"].items()
    ]


def metrics_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source (and 'all'): FVU, L0 and dead fraction on held-out rows, over seeds."""
    over = (results.get("over_seeds") or {}).get("metrics")
    if over is None:  # one analysis without seeds
        m = results.get("metrics")
        if not m:
            return []
        one = lambda d: {k: {"mean": d[k], "lo": None, "hi": None} for k in ("fvu", "l0", "dead_fraction")}  # noqa: E731
        over = {**one(m), "per_source": {n: one(v) for n, v in m["per_source"].items()}}
    rows = [{"source": n, **v} for n, v in over["per_source"].items()] + [{"source": "all sources", **over}]
    return [
        {
            "source": r["source"],
            "fvu": interval(r["fvu"], 3),
            "l0": interval(r["l0"], 2),
            "dead_fraction": interval(r["dead_fraction"], 3),
        }
        for r in rows
    ]


def comparison_section(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison report's crosscoder entries: per pair its counts, metrics, histogram and page link."""
    out = []
    for variant, rec in (results.get("crosscoders") or {}).items():
        sharing = rec["sharing"]
        per_seed = {s: r["relative_norm"] for s, r in rec.get("per_seed", {}).items()}
        out.append(
            {
                "variant": variant,
                "names": sharing["names"],
                "hookpoint": rec["dictionary"].get("hook_name"),
                "kind": rec["dictionary"].get("kind"),
                "page": rec.get("page"),
                "counts": counts_table(rec),
                "metrics": metrics_table(rec),
                "flagged": interval((rec.get("over_seeds") or {}).get("n_flagged")),
                "plot": relative_norm_histogram(np.array(sharing["share"]), sharing["classes"], sharing["names"], per_seed),
            }
        )
    return out
