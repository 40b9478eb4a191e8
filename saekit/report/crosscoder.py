"""The crosscoder report: one self-contained HTML page from a Jinja2 template and matplotlib plots.

``write_crosscoder_report(results, out)`` takes the dict ``saekit.pipeline.crosscoder`` builds
(sharing, latent scaling, example contexts) and writes ``out/report.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from saekit.fileutil import atomic_write_text
from saekit.report.plots import plt, to_data_uri


def relative_norm_histogram(share: np.ndarray, classes: list[str], names: list[str]) -> str:
    """Histogram of each alive latent's norm share in the last source (relative norm for pairs)."""
    alive = np.array([c != "dead" for c in classes], dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(share[alive, -1] if alive.any() else [], bins=np.linspace(0, 1, 41), color="#4477aa")
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
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("saekit.report", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    sharing, scaling = results["sharing"], results["latent_scaling"]
    plots = {
        "relative_norm": relative_norm_histogram(np.array(sharing["share"]), sharing["classes"], sharing["names"]),
        "scaling": scaling_scatter(scaling),
    }
    html = env.get_template("crosscoder.html.j2").render(
        names=sharing["names"],
        cfg=results["dictionary"],
        thresholds=sharing["thresholds"],
        counts=sharing["counts"],
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
