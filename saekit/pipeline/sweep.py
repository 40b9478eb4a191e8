"""Dose-response of one regulariser: models at several coefficients (and model seeds), the comparison,
and each axis plotted against the LM cost (the Pareto front of interpretability gained for loss paid).

``sweep_variant`` trains (or reuses, ``train_model`` keeps an identical folder) ``OUT/models/<name>``
for the baseline, the random control and the variant at every coefficient, for every model seed; runs
``run_comparison`` on them into ``OUT/compare``; and writes ``OUT/compare/pareto.png`` (beside the report): one panel per dictionary
and axis, x = delta LM cost (variant − baseline), y = delta of the axis, each point a coefficient with
its 95 % interval, the Pareto front drawn through the points no other point beats on both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.config import DEFAULT_COEF, ModelConfig
from saekit.errors import ConfigError
from saekit.pipeline.stats import DEFAULT_HIGHER_IS_BETTER

PARETO_AXES = ("reconstruction", "explainability", "abstractness", "consistency", "neuron_alignment")


def check_sweep(variant: str, coefs: list[float], seeds: list[int]) -> None:
    """One sentence on what is wrong with a sweep's variant, coefficients or seeds."""
    if variant not in DEFAULT_COEF or variant in ("baseline", "random"):
        known = ", ".join(v for v in DEFAULT_COEF if v not in ("baseline", "random"))
        raise ConfigError(f"--variant must be a regularised variant ({known}), got {variant!r}.")
    if len(coefs) < 1 or len(set(coefs)) != len(coefs) or any(c < 0 for c in coefs):
        raise ConfigError(f"--coefs must be one or more distinct non-negative numbers, got {coefs}.")
    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be one or more distinct model seeds, got {seeds}.")


def model_plan(variant: str, coefs: list[float], seeds: list[int], base: ModelConfig) -> dict[str, ModelConfig]:
    """Folder name -> ModelConfig of every model of the sweep (baseline and random control included)."""
    plan = {}
    for s in seeds:
        plan[f"baseline-s{s}"] = base.replace(variant="baseline", coef=None, group=None, seed=s)
        plan[f"random-s{s}"] = base.replace(variant="random", coef=None, group=None, seed=s)
        for c in coefs:
            plan[f"{variant}-c{c:g}-s{s}"] = base.replace(variant=variant, coef=float(c), group=None, seed=s)
    return plan


def sweep_variant(
    variant: str, coefs: list[float], seeds: list[int], out_dir: str | Path, model_cfg: ModelConfig | None = None,
    model_data: tuple[Any, Any] | None = None, progress: bool = False, **compare_kwargs: Any,
) -> dict[str, Any]:  # fmt: skip
    """Train (or reuse) the sweep's models, compare them, plot the Pareto fronts; returns the results
    with ``results["sweep"] = {"variant", "coefs", "seeds", "pareto_png", "points"}``.

    model_data: (tokenizer, (train, val)) to train the models on instead of the built-in corpus;
    compare_kwargs go to ``run_comparison`` (dict_cfgs, seeds of dictionaries as ``dict_seeds``, ...).
    """
    from saekit.models import train_model
    from saekit.pipeline.run import run_comparison
    from saekit.report import write_report

    check_sweep(variant, list(coefs), list(seeds))
    out = Path(out_dir)
    base = model_cfg or ModelConfig()
    folders = []
    for name, cfg in model_plan(variant, list(coefs), list(seeds), base).items():
        tok, data = model_data if model_data is not None else (None, None)
        train_model(cfg, out / "models" / name, tokenizer=tok, data=data, progress=progress)
        folders.append(out / "models" / name)
    dict_seeds = compare_kwargs.pop("dict_seeds", (0, 1, 2))
    results = run_comparison(folders, out_dir=out / "compare", seeds=tuple(dict_seeds), report=False, **compare_kwargs)
    points = pareto_points(results, variant)
    png = out / "compare" / "pareto.png"  # beside report.html
    plot_pareto(points, variant, png)
    results["sweep"] = {"variant": variant, "coefs": list(coefs), "seeds": list(seeds), "pareto_png": str(png),
                        "points": points}  # fmt: skip
    from saekit.pipeline.results import write_results

    write_results(out / "compare", results)
    write_report(results, out / "compare" / "report.html")
    return results


def pareto_points(results: dict[str, Any], variant: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """points[dict][axis] = [{"group", "coef", "lm_cost", "lm_cost_ci", "delta", "ci95", "verdict", "front"}]
    for the variant's groups, sorted by coefficient; ``front``: no other point has a lower LM cost and a
    better axis delta (both at least as good, one strictly)."""
    coefs = {g: info.get("coef") for g, info in _group_coefs(results, variant).items()}
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for g in sorted(coefs, key=lambda g: coefs[g]):
        for d, per_axis in results["verdicts"].get(g, {}).items():
            lm = per_axis.get("lm_cost", {})
            for axis in PARETO_AXES:
                rec = per_axis.get(axis)
                if rec is None or rec.get("delta") is None or lm.get("delta") is None:
                    continue
                out.setdefault(d, {}).setdefault(axis, []).append(
                    {
                        "group": g,
                        "coef": coefs[g],
                        "lm_cost": lm["delta"],
                        "lm_cost_ci": lm.get("ci95"),
                        "delta": rec["delta"],
                        "ci95": rec.get("ci95"),
                        "verdict": rec.get("verdict"),
                    }  # fmt: skip
                )
    for per_axis in out.values():
        for axis, pts in per_axis.items():
            sign = 1.0 if DEFAULT_HIGHER_IS_BETTER[axis] else -1.0
            for p in pts:
                p["front"] = not any(
                    q["lm_cost"] <= p["lm_cost"] and sign * q["delta"] >= sign * p["delta"]
                    and (q["lm_cost"] < p["lm_cost"] or sign * q["delta"] > sign * p["delta"])
                    for q in pts
                )  # fmt: skip
    return out


def _group_coefs(results: dict[str, Any], variant: str) -> dict[str, dict[str, Any]]:
    """Group -> the info of its first model, for the groups of ``variant``."""
    out = {}
    for g, models in results["groups"].items():
        info = results["variants"].get(models[0], {}).get("info", {})
        if info.get("variant") == variant:
            out[g] = info
    return out


def plot_pareto(points: dict[str, dict[str, list[dict[str, Any]]]], variant: str, path: Path) -> Path:
    """One panel per dictionary × axis: axis delta against LM cost delta, intervals, front as a line."""
    from saekit.report.plots import plt

    panels = [(d, a, pts) for d, per_axis in points.items() for a, pts in per_axis.items()]
    n = max(1, len(panels))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axs = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (d, axis, pts) in zip(axs.flat, panels):
        for p in pts:
            x, y = p["lm_cost"], p["delta"]
            xerr = [[x - p["lm_cost_ci"][0]], [p["lm_cost_ci"][1] - x]] if p["lm_cost_ci"] else None
            yerr = [[y - p["ci95"][0]], [p["ci95"][1] - y]] if p["ci95"] else None
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color="C0" if p["front"] else "0.6", capsize=2)
            ax.annotate(f"{p['coef']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = sorted((p for p in pts if p["front"]), key=lambda p: p["lm_cost"])
        ax.plot([p["lm_cost"] for p in front], [p["delta"] for p in front], "-", color="C0", alpha=0.6)
        ax.axhline(0, color="0.8", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
        better = "higher" if DEFAULT_HIGHER_IS_BETTER[axis] else "lower"
        ax.set(
            title=f"{d}: {axis}", xlabel="Δ LM loss vs baseline (nats/token)", ylabel=f"Δ {axis} ({better} = better)"
        )
    for ax in list(axs.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"{variant}: each coefficient's effect against its LM cost (line: Pareto front)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
