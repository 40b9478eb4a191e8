"""Step 6: verdicts. Axis values of every model and dictionary seed, grouped by comparison group,
into ``verdicts[variant][dictionary][axis]`` records (``saekit.pipeline.stats.verdicts_for``).

All variants × dictionaries × axes of a run form one Holm family. A dictionary config whose
dictionaries of one model disagree (baseline seed consistency not clearly above chance) is
*not converged*: its matching-based axis (consistency) keeps its interval but gets no verdict.
With a concept (``saekit compare --concept``) the three editability measures of the latents and of the
MLP neurons are six axes of that family; ``editability`` (the headline) repeats one of them and is not
tested again; censored units_to_half values (not reached) are counted in the record's note.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from saekit.errors import ConfigError
from saekit.evaluation.matching import CONVERGED_COS_MARGIN, CONVERGED_MIN_SHARED, chance_level, is_converged
from saekit.pipeline.axes import CONSISTENCY_COS
from saekit.pipeline.stats import DEFAULT_HIGHER_IS_BETTER, verdicts_for

# axis name in the verdicts -> the measurement behind it (reported as "metric")
AXES = {
    "reconstruction": "fvu",
    "ce_loss_recovered": "ce_loss_recovered (mean ablation)",
    "explainability": "median held-out n-gram F1",
    "abstractness": "median 1 - R² from the current token id",
    "abstractness_last_two": "median 1 - R² from the last two token ids",
    "consistency": f"shared fraction between dictionary seeds (Hungarian, cos > {CONSISTENCY_COS})",
    "neuron_alignment": f"fraction of latents with cos > {CONSISTENCY_COS} to one neuron's W_out row",
    "neuron_abstractness": "median 1 - R² from the current token id of the model's own MLP neurons",
    "neuron_explainability": "median held-out n-gram F1 of the model's own MLP neurons (activation > 0 = firing)",
    "lm_cost": "held-out LM loss (nats/token)",
    "editability": "concept editability through the latents: the headline measure (--edit-measure)",
    "editability_units_to_half": "top latents (by AUROC) zero-ablated to remove half the concept probability "
    "(not reached: largest n tried + 1)",
    "editability_selectivity_auc": "mean of concept drop - collateral over n latents ablated (log2(1 + n) axis, nats)",
    "editability_steering_efficiency": "gain of the concept continuation's log-prob within 0.1 nats of control loss, "
    "steering with the top latent (nats)",
    "neuron_editability_units_to_half": "top MLP neurons (by AUROC) zero-ablated to remove half the concept "
    "probability (not reached: largest n tried + 1)",
    "neuron_editability_selectivity_auc": "mean of concept drop - collateral over n MLP neurons ablated (nats)",
    "neuron_editability_steering_efficiency": "steering efficiency along the top MLP neuron's axis (nats)",
    "ground_truth": "mean best-latent F1 over the planted language's labels (activation > 0 vs label)",
}
MATCHING_AXES = ("consistency",)
# one value per model, not per dictionary
MODEL_AXES = (
    "consistency", "neuron_abstractness", "neuron_explainability",
    *(a for a in AXES if a.startswith("neuron_editability_")),
)  # fmt: skip
HEADLINE_NOTE = (
    "The headline editability measure ({m}): the same numbers and test as {axis}, counted once in the Holm family."
)
CENSORED_NOTE = (
    "{axis}: half the concept was not removed within the n tried in {cv} of {nv} {what} of {v} and {cb} of {nb} of "
    "{b}; those count as the largest n tried + 1 ({cap}), a lower bound, so the delta understates any difference."
)
# the rule of seed_consistency (saekit.evaluation.matching.is_converged): shared >= 20 %, cos >= chance + 0.2
CONVERGED_RULE = (
    f"converged when dictionary seeds of one model share >= {CONVERGED_MIN_SHARED:.0%} of latents and their mean "
    f"Hungarian cosine is >= chance + {CONVERGED_COS_MARGIN:g}"
)
NOT_CONVERGED = (
    "Not converged: dictionaries of one model disagree (baseline seeds share {c:.3f} of latents, chance {ch:.3f}; "
    "mean Hungarian cos {cos:.3f}, chance {ch_cos:.3f}; " + CONVERGED_RULE + "); "
    "train longer, narrower or with smaller batches. No verdict on matching-based axes."
)
LM_COST_NOTE = "LM loss is one number per model: one test per variant, shown under each dictionary."


def _key(d: str, axis: str) -> str:
    return f"{d}/{axis}"


def convergence(dict_name: str, per_model: dict[str, dict[str, float]], sae_shape: tuple[int, int]) -> dict[str, Any]:
    """Seed consistency of one dictionary config's baseline models against chance, judged by the rule of
    ``seed_consistency`` (``is_converged``) on the means over models. per_model: model -> the
    ``consistency`` (shared fraction) and ``consistency_cos`` (mean Hungarian cosine) of its seeds."""
    n, d = sae_shape
    chance = chance_level(n, n, d, thresholds=(CONSISTENCY_COS,))
    c, cos = _mean_of(per_model, "consistency"), _mean_of(per_model, "consistency_cos")
    return {
        "dict": dict_name,
        "consistency": c,
        "chance": chance["shared_fraction"][0],
        "mean_cos": cos,
        "chance_cos": chance["hungarian_mean_cos"],
        "converged": is_converged(c, cos, chance["hungarian_mean_cos"]),
        "rule": CONVERGED_RULE,
    }


def _mean_of(per_model: dict[str, dict[str, float]], key: str) -> float:
    vals = [m[key] for m in per_model.values() if m.get(key) is not None and m[key] == m[key]]
    return float(np.mean(vals)) if vals else float("nan")


def run_verdicts(
    groups: dict[str, list[str]],
    dict_axes: dict[tuple[str, str, int], dict[str, Any]],
    model_axes: dict[tuple[str, str], dict[str, Any]],
    lm_loss: dict[str, float],
    converged: dict[str, dict[str, Any]],
    seed: int = 0,
    edit_measure: str | None = None,
    axes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """verdicts[variant][dictionary][axis] records and the notes of the run (no baseline: no verdicts).

    edit_measure: the headline editability measure; its ``editability_<measure>`` record is also given as
    ``editability`` (one test, not two). Without it (or without that axis) ``editability`` is tested alone.
    axes: the axes tested (default every axis measured), so the Holm family holds only them."""
    if "baseline" not in groups:
        return {"verdicts": {}, "note": "No group named 'baseline' in this run, so no verdicts."}
    unknown = sorted(set(axes or ()) - set(AXES))
    if unknown:
        raise ConfigError(f"unknown verdict axes {unknown}; the axes are {sorted(AXES)}.")
    dict_names = sorted({d for _, d, _ in dict_axes})
    values = _group_values(groups, dict_names, dict_axes, model_axes, lm_loss)
    headline = f"editability_{edit_measure}" if edit_measure else None
    aliased = {d for d in dict_names if headline and all(_key(d, headline) in vals for vals in values.values())}
    if axes is not None and headline not in axes:
        aliased = set()  # the headline's own axis is not tested: no alias of it
    for g, vals in values.items():  # the headline is the same numbers as its own axis: test it once
        for d in aliased:
            vals.pop(_key(d, "editability"), None)
        if axes is not None:  # a question asked in advance: only its axes form the Holm family
            values[g] = {k: v for k, v in vals.items() if k.rsplit("/", 1)[-1] in axes}
    direction = {_key(d, a): DEFAULT_HIGHER_IS_BETTER[a] for d in dict_names for a in AXES}
    metrics = {_key(d, a): m for d in dict_names for a, m in AXES.items()}
    direction["lm_cost"], metrics["lm_cost"] = DEFAULT_HIGHER_IS_BETTER["lm_cost"], AXES["lm_cost"]
    withhold = {
        _key(d, a): NOT_CONVERGED.format(c=c["consistency"], ch=c["chance"], cos=c["mean_cos"], ch_cos=c["chance_cos"])
        for d, c in converged.items()
        if not c["converged"]
        for a in MATCHING_AXES
    }
    flat = verdicts_for(values, higher_is_better=direction, metrics=metrics, withhold=withhold, seed=seed)
    out: dict[str, Any] = {}
    for v, per_axis in flat.items():
        for key, rec in per_axis.items():
            if key == "lm_cost":  # the same record under every dictionary of the variant
                rec["note"] = " ".join(filter(None, [rec.get("note"), LM_COST_NOTE]))
                for d in dict_names:
                    out.setdefault(v, {}).setdefault(d, {})[key] = rec
                continue
            d, axis = key.rsplit("/", 1)
            out.setdefault(v, {}).setdefault(d, {})[axis] = rec
    _editability_notes(out, groups, dict_axes, model_axes, aliased, edit_measure)
    return {"verdicts": out, "note": ""}


def _group_values(groups, dict_names, dict_axes, model_axes, lm_loss) -> dict[str, dict[str, Any]]:
    """values[group]["dict/axis" or "lm_cost"]: the nested seeds' values ``verdicts_for`` reads."""
    values: dict[str, dict[str, Any]] = {g: {} for g in groups}
    per_dict_axes = [("reconstruction", "fvu"), *((a, a) for a in AXES if a not in ("reconstruction", "lm_cost", *MODEL_AXES))]
    for g, models in groups.items():
        for d in dict_names:
            for axis, source in per_dict_axes:
                nested = {
                    m: {
                        s: v[source]
                        for (mm, dd, s), v in dict_axes.items()
                        if mm == m and dd == d and v.get(source) is not None
                    }
                    for m in models
                }
                nested = {m: inner for m, inner in nested.items() if inner}
                if nested:
                    values[g][_key(d, axis)] = nested
            for axis in MODEL_AXES:
                per_model = {m: model_axes[(m, d)][axis] for m in models if axis in model_axes.get((m, d), {})}
                if per_model:
                    values[g][_key(d, axis)] = per_model
        # one LM loss per model, whatever the dictionaries: one test per variant in the Holm family
        per_model_loss = {m: lm_loss[m] for m in models if m in lm_loss}
        if per_model_loss:
            values[g]["lm_cost"] = per_model_loss
    return values


def _editability_notes(out, groups, dict_axes, model_axes, aliased, edit_measure) -> None:
    """Say how many units_to_half values were censored (not reached), and give the headline its alias."""
    censored = (("editability_units_to_half", "dictionaries", dict_axes), ("neuron_editability_units_to_half", "models", model_axes))
    for v, per_dict in out.items():
        for d, per_axis in per_dict.items():
            for axis, what, source in censored:
                rec = per_axis.get(axis)
                if rec is not None and rec.get("variant") is not None:
                    _add_note(rec, _censored_note(axis, what, source, d, v, groups))
            if d in aliased:
                headline = f"editability_{edit_measure}"
                alias = {**per_axis[headline], "metric": f"{edit_measure}: {AXES[headline]}"}
                _add_note(alias, HEADLINE_NOTE.format(m=edit_measure, axis=headline), first=True)
                per_axis["editability"] = alias


def _censored_note(axis: str, what: str, source: dict, d: str, v: str, groups: dict[str, list[str]]) -> str:
    """A sentence with the count of values of ``axis`` that are 'not reached' (censored), in the variant
    and the baseline; "" when none is."""
    flags = {g: [a.get(axis + "_reached") for (m, dd, *_), a in source.items()
                 if dd == d and m in groups[g] and a.get(axis) is not None] for g in (v, "baseline")}  # fmt: skip
    cv, cb = (sum(f is False for f in flags[g]) for g in (v, "baseline"))
    if not (cv or cb):
        return ""
    cap = max(a[axis] for (_, dd, *_), a in source.items() if dd == d and a.get(axis + "_reached") is False)
    return CENSORED_NOTE.format(
        axis=axis, cv=cv, nv=len(flags[v]), what=what, v=v, cb=cb, nb=len(flags["baseline"]), b="baseline", cap=f"{cap:g}"
    )


def _add_note(rec: dict[str, Any], note: str, first: bool = False) -> None:
    parts = [note, rec.get("note")] if first else [rec.get("note"), note]
    rec["note"] = " ".join(filter(None, parts))


def verdicts_from_results(
    results: dict[str, Any],
    groups: dict[str, list[str]] | None = None,
    seed: int = 0,
    axes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The verdicts again from a finished run's results.json (no retraining), e.g. with other groups.

    Uses the stored per-dictionary axis values (per-latent axes as their medians, so the bootstrap
    resamples model and dictionary seeds but not latents), per-model axes, LM losses and convergence.
    groups: group -> model names (default: the run's own ``results["groups"]``); ``seed``: the bootstrap seed;
    ``axes``: only these axes (e.g. the ones a question was asked about before the run), so the Holm
    correction runs over them alone instead of over every axis the run measured.
    """
    groups = groups if groups is not None else results["groups"]
    dict_axes = {(r["variant"], r["dict"], r["seed"]): r.get("axes", {}) for r in results["dictionaries"]}
    model_axes = {tuple(k.rsplit("/", 1)): v for k, v in results.get("model_axes", {}).items()}
    measure = (results.get("editing") or {}).get("measure")
    return run_verdicts(
        groups, dict_axes, model_axes, results.get("lm_loss", {}), results["convergence"], seed=seed,
        edit_measure=measure, axes=axes,
    )
