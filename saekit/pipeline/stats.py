"""Statistics of a comparison: hierarchical bootstrap over model and dictionary seeds, Holm, verdicts.

Values come nested by the two seeds that make a comparison noisy::

    {model_seed: {dict_seed: value}}     # value: a float, or a 1-D array of per-latent values
    {model_seed: value}                  # an axis measured once per model (lm_cost, consistency)

A group's estimate is the mean over its models of the mean over that model's dictionaries of the
value; a per-latent array is first summarised by its **median** over latents (NaN entries, e.g.
dead latents, are left out), as the per-latent axes are defined.

``hierarchical_bootstrap`` resamples that nesting: model seeds with replacement, then, inside each
drawn model, its dictionary seeds with replacement, then, inside each drawn dictionary, its latents
with replacement (per-latent axes), and returns the group estimate of every replicate.

``bootstrap_delta`` compares two independent groups (variant - baseline). Its default interval,
``method="t"``, takes the spread of the bootstrapped delta and calibrates it for the few model seeds
a comparison has: the bootstrap variance of a mean over M models is (M-1)/M of the usual one, so
each group's bootstrap variance is scaled by M/(M-1), and the interval and p-value use Student's t
with Welch-Satterthwaite degrees of freedom from the model counts. ``method="percentile"`` is the
plain percentile interval with the two-sided bootstrap p = 2·min(P(delta* <= 0), P(delta* >= 0))
(with +1 in numerator and denominator, so p is never 0). With 2 or 3 model seeds the percentile
interval is far too narrow (resampling 2 models sees 3 distinct means): it covered a known
difference 69-88 % of the time with 2 model seeds (benchmarks/verdict_coverage.py) and declared
differences between groups drawn from one distribution on 30 of 160 axes; see
tests/test_stats.py::test_percentile_interval_is_overconfident_with_two_model_seeds. Use it only
with many model seeds.

``verdicts_for`` turns groups of such values into one verdict per variant and axis, after a Holm
correction over every variant × axis tested in the run (see its docstring for the rule).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats as sps

from saekit.errors import ConfigError, DataError

# Which direction is an improvement, per axis name (lower FVU and lower LM cost are better).
DEFAULT_HIGHER_IS_BETTER: dict[str, bool] = {
    "reconstruction": False,
    "fvu": False,
    "ce_loss_recovered": True,
    "explainability": True,
    "abstractness": True,
    "abstractness_last_two": True,
    "consistency": True,
    "neuron_alignment": True,
    "neuron_explainability": True,
    "neuron_abstractness": True,
    "neuron_abstractness_last_two": True,
    "lm_cost": False,
    "editability": True,  # the headline measure; units_to_half is reported as its own axis (saekit.pipeline.editing)
    "editability_units_to_half": False,  # fewer units to remove half the concept: more localised
    "editability_selectivity_auc": True,
    "editability_steering_efficiency": True,
    "neuron_editability_units_to_half": False,
    "neuron_editability_selectivity_auc": True,
    "neuron_editability_steering_efficiency": True,
    "ground_truth": True,
}

NO_DIFFERENCE = "no detectable difference"
NOT_ENOUGH_SEEDS = "not enough model seeds"
NOT_MEASURED = "not measured"
WITHHELD = "withheld"


class _Group:
    """Nested values parsed into per model a list of 1-D float arrays (one per dictionary seed)."""

    def __init__(self, values: Mapping[Any, Any], name: str = "values") -> None:
        if not isinstance(values, Mapping) or not values:
            raise DataError(
                f"{name} must be a non-empty {{model_seed: {{dict_seed: value}}}} mapping, got {values!r:.80}."
            )
        self.models: list[list[np.ndarray]] = []
        self.per_model_leaves = not any(isinstance(v, Mapping) for v in values.values())
        kinds = set()
        for m, inner in values.items():
            inner = inner if isinstance(inner, Mapping) else {None: inner}
            if not inner:
                raise DataError(f"{name}: model seed {m!r} has no dictionary values.")
            leaves = []
            for s, v in inner.items():
                arr = np.asarray(v, dtype=np.float64)
                if arr.ndim > 1:
                    raise DataError(
                        f"{name}[{m!r}][{s!r}] must be a number or a 1-D per-latent array, got shape {arr.shape}."
                    )
                kinds.add(arr.ndim)
                arr = arr.reshape(-1)
                arr = np.sort(arr[~np.isnan(arr)])  # sorted: the latent resampling draws ranks
                if arr.size == 0:
                    raise DataError(f"{name}[{m!r}][{s!r}] has no finite value (all NaN or empty).")
                leaves.append(arr)
            self.models.append(leaves)
        if len(kinds) > 1:
            raise DataError(f"{name} mixes numbers and per-latent arrays; give one kind per axis.")
        self.per_latent = kinds == {1}

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_seeds(self) -> int | None:
        """Fewest dictionary seeds of any model (None when the axis has one value per model)."""
        return None if self.per_model_leaves else min(len(leaves) for leaves in self.models)

    def estimate(self) -> float:
        summary = np.median if self.per_latent else np.mean
        return float(np.mean([np.mean([summary(leaf) for leaf in leaves]) for leaves in self.models]))


def group_estimate(values: Mapping[Any, Any]) -> float:
    """Mean over model seeds of the mean over dictionary seeds (median over latents for arrays)."""
    return _Group(values).estimate()


def hierarchical_bootstrap(values: Mapping[Any, Any], n_boot: int = 2000, seed: Any = 0) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the group estimate (see ``group_estimate``), float64 [n_boot].

    Each replicate draws M model seeds with replacement out of the M given; for each drawn model,
    its S dictionary seeds with replacement; for each drawn dictionary of a per-latent axis, its L
    latents with replacement, summarised by their median (drawn exactly from order statistics, so
    the cost does not grow with the number of latents). Every draw is independent (a model drawn
    twice gets two independent inner resamples). seed: an int or a numpy SeedSequence.
    """
    if n_boot < 2:
        raise ConfigError(f"n_boot must be at least 2, got {n_boot}.")
    g = _Group(values)
    rng = np.random.default_rng(seed)
    m = g.n_models
    draws = rng.integers(0, m, size=n_boot * m)  # slot (replicate, k) -> model index
    slot_values = np.empty(n_boot * m)
    for i, leaves in enumerate(g.models):
        slots = np.flatnonzero(draws == i)
        if slots.size:
            slot_values[slots] = _model_replicates(leaves, slots.size, rng, g.per_latent)
    return slot_values.reshape(n_boot, m).mean(axis=1)


def _model_replicates(leaves: list[np.ndarray], n: int, rng: np.random.Generator, per_latent: bool) -> np.ndarray:
    """n replicates of one model's mean over its resampled dictionary seeds."""
    s = len(leaves)
    seed_draws = rng.integers(0, s, size=(n, s))
    vals = np.empty((n, s))
    for j, leaf in enumerate(leaves):
        hit = seed_draws == j
        vals[hit] = _leaf_replicates(leaf, int(hit.sum()), rng, per_latent)
    return vals.mean(axis=1)


def _leaf_replicates(leaf: np.ndarray, n: int, rng: np.random.Generator, per_latent: bool) -> np.ndarray:
    """n replicates of one dictionary's value: the value itself, or the median of its resampled latents.

    The median of L values drawn with replacement from the sorted ``leaf`` is drawn exactly without
    drawing the L values: a draw's rank is ceil(L·U) for U uniform, so the j-th smallest of the
    resample is at rank ceil(L·U_(j)), where U_(j) ~ Beta(j, L-j+1) is the j-th smallest of L
    uniforms and, given it, U_(j+1) = U_(j) + (1 - U_(j))·Beta(1, L-j). Cost O(n), whatever L.
    """
    if not per_latent:
        return np.full(n, leaf[0])
    size = leaf.size
    j = (size + 1) // 2  # 1-based rank of the (lower) middle
    u = rng.beta(j, size - j + 1, size=n)
    lower = leaf[_rank(u, size)]
    if size % 2:
        return lower
    upper = leaf[_rank(u + (1 - u) * rng.beta(1, size - j, size=n), size)]
    return (lower + upper) / 2


def _rank(u: np.ndarray, size: int) -> np.ndarray:
    """0-based index ceil(size·u) - 1 of a uniform draw u in (0, 1) among ``size`` sorted values."""
    return np.clip(np.ceil(u * size).astype(np.int64) - 1, 0, size - 1)


def bootstrap_delta(
    variant: Mapping[Any, Any],
    baseline: Mapping[Any, Any],
    *,
    n_boot: int = 2000,
    seed: Any = 0,
    level: float = 0.95,
    method: str = "t",
) -> dict[str, Any]:
    """Difference variant - baseline of two independent groups, with an interval and a two-sided p.

    Returns ``delta`` (difference of the group estimates), ``ci`` [lo, hi] at ``level``, ``p``
    (two-sided; p < 1 - level exactly when ``ci`` excludes 0), ``samples`` (the bootstrapped deltas),
    ``se``, ``df`` (t only), ``method``, ``n_models`` (variant, baseline). method="t" (default):
    bootstrap standard error, scaled by M/(M-1) per group, with Welch t quantiles; "percentile":
    the bootstrap percentile interval and p = 2·min(P(delta* <= 0), P(delta* >= 0)) (module doc).
    Both groups need at least 2 model seeds.
    """
    if method not in ("t", "percentile"):
        raise ConfigError(f"method must be 't' or 'percentile', got {method!r}.")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}.")
    gv, gb = _Group(variant, "variant"), _Group(baseline, "baseline")
    if min(gv.n_models, gb.n_models) < 2:
        raise DataError(
            f"an interval needs at least 2 model seeds per group; got {gv.n_models} (variant) and {gb.n_models} (baseline)."
        )
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    seq_v, seq_b = seq.spawn(2)
    bv, bb = hierarchical_bootstrap(variant, n_boot, seq_v), hierarchical_bootstrap(baseline, n_boot, seq_b)
    delta = gv.estimate() - gb.estimate()
    samples = bv - bb
    out = {"delta": delta, "samples": samples, "method": method, "n_models": (gv.n_models, gb.n_models)}
    if method == "percentile":
        q = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
        below, above = (samples <= 0).sum(), (samples >= 0).sum()
        p = min(1.0, 2 * min(below + 1, above + 1) / (n_boot + 1))
        return {**out, "ci": [float(q[0]), float(q[1])], "p": float(p), "se": float(samples.std(ddof=1)), "df": None}
    return {**out, **_welch_t(delta, bv, bb, gv.n_models, gb.n_models, level)}


def _welch_t(delta: float, bv: np.ndarray, bb: np.ndarray, mv: int, mb: int, level: float) -> dict[str, Any]:
    """Interval and p from the bootstrap variances, scaled by M/(M-1), and Welch's degrees of freedom."""
    var_v = bv.var(ddof=1) * mv / (mv - 1)
    var_b = bb.var(ddof=1) * mb / (mb - 1)
    se = float(np.sqrt(var_v + var_b))
    if se == 0.0:
        return {"ci": [delta, delta], "p": 1.0 if delta == 0 else 0.0, "se": 0.0, "df": float(mv + mb - 2)}
    df = float((var_v + var_b) ** 2 / (var_v**2 / (mv - 1) + var_b**2 / (mb - 1)))
    half = float(sps.t.ppf((1 + level) / 2, df)) * se
    p = float(2 * sps.t.sf(abs(delta) / se, df))
    return {"ci": [delta - half, delta + half], "p": p, "se": se, "df": df}


def holm(pvalues: Mapping[Any, float]) -> dict[Any, float]:
    """Holm-Bonferroni adjusted p-values, same keys.

    Sort the m p-values ascending, p_(1) <= ... <= p_(m); the adjusted value of the i-th is
    max over j <= i of min(1, (m - j + 1) · p_(j)). This is statsmodels'
    ``multipletests(p, method="holm")[1]``; rejecting where the adjusted p < alpha is Holm's
    step-down test, which keeps the family-wise error rate at alpha. Example: {a: 0.01, b: 0.04,
    c: 0.03, d: 0.005} -> {d: 0.02, a: 0.03, c: 0.06, b: 0.06}.
    """
    items = list(pvalues.items())
    for k, p in items:
        if p is None or not 0 <= float(p) <= 1:
            raise ConfigError(f"p-value of {k!r} must be a number in [0, 1], got {p!r}.")
    order = sorted(range(len(items)), key=lambda i: float(items[i][1]))
    m, running, out = len(items), 0.0, {}
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(items[i][1])))
        out[items[i][0]] = running
    return {k: out[k] for k, _ in items}


def verdicts_for(
    groups: Mapping[str, Mapping[str, Mapping[Any, Any]]],
    baseline: str = "baseline",
    random: str = "random",
    axes: list[str] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    alpha: float = 0.05,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    min_model_seeds: int = 2,
    method: str = "t",
    metrics: Mapping[str, str] | None = None,
    withhold: Mapping[str, str] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """One verdict per variant (every group but ``baseline``, the random control included) and axis.

    groups[group][axis]: nested values {model_seed: {dict_seed: value or per-latent array}} or
    {model_seed: value}. Returns verdicts[variant][axis] = {"metric", "baseline", "variant",
    "random" (group estimates), "delta" (variant - baseline), "ci95" [lo, hi] (unadjusted 95 %
    interval of delta), "normalised" ((variant - random) / (baseline - random), None without the
    control), "verdict", "n_models", "n_seeds" (the variant's), "n_models_baseline", "p", "p_holm",
    "n_tests", "note"}.

    Rule: every (variant, axis) with an interval is one test of one Holm family for the whole call;
    the verdict is "better" or "worse" (by the sign of delta and ``higher_is_better``) when its
    Holm-adjusted p is below ``alpha``, else "no detectable difference". So ``ci95`` may exclude 0
    while the verdict says no difference: the difference did not survive the correction for the
    ``n_tests`` tests. A group with fewer than ``min_model_seeds`` model seeds gets point estimates,
    no interval and the verdict "not enough model seeds" (with a sentence in ``note``), and the
    others go on; an axis in ``withhold`` ({axis: reason}) gets its interval but the verdict
    "withheld" and stays out of the family; a missing or unusable axis gets "not measured".
    """
    if baseline not in groups:
        raise ConfigError(f"verdicts need a baseline group named {baseline!r}; the groups are {sorted(groups)}.")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}.")
    axes = list(axes) if axes is not None else _all_axes(groups, baseline)
    direction = {**DEFAULT_HIGHER_IS_BETTER, **(higher_is_better or {})}
    unknown = [a for a in axes if a not in direction]
    if unknown:
        raise ConfigError(f"no direction for axes {unknown}: pass higher_is_better={{axis: True or False}}.")
    metrics, withhold = dict(metrics or {}), dict(withhold or {})
    verdicts = {v: {} for v in groups if v != baseline}
    testable = []
    for v in verdicts:
        for axis in axes:
            entry = _point_entry(groups, v, axis, baseline, random, metrics.get(axis, axis), min_model_seeds)
            verdicts[v][axis] = entry
            if entry["verdict"] is None:
                testable.append((v, axis))
    # the percentile p cannot go below 2/(n_boot+1): make sure Holm's smallest threshold is reachable
    if method == "percentile":
        n_boot = max(n_boot, int(np.ceil(4 * max(1, len(testable)) / alpha)))
    for v, axis in testable:
        rng_seed = np.random.SeedSequence([seed, zlib.crc32(v.encode()), zlib.crc32(axis.encode())])
        d = bootstrap_delta(groups[v][axis], groups[baseline][axis], n_boot=n_boot, seed=rng_seed, method=method)
        verdicts[v][axis].update(ci95=d["ci"], p=d["p"])
    family = {(v, a): verdicts[v][a]["p"] for v, a in testable if a not in withhold}
    adjusted = holm(family)
    for v, axis in testable:
        e = verdicts[v][axis]
        if axis in withhold:
            e.update(verdict=WITHHELD, note=_join(e["note"], withhold[axis]))
            continue
        e.update(p_holm=adjusted[(v, axis)], n_tests=len(family))
        if e["p_holm"] >= alpha:
            e["verdict"] = NO_DIFFERENCE
        else:
            e["verdict"] = "better" if (e["delta"] > 0) == direction[axis] else "worse"
    return verdicts


def _all_axes(groups: Mapping[str, Mapping[str, Any]], baseline: str) -> list[str]:
    axes = list(groups[baseline])
    for g in groups.values():
        axes += [a for a in g if a not in axes]
    return axes


def _join(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)


def _point_entry(groups, variant, axis, baseline, random, metric, min_models) -> dict[str, Any]:
    """Estimates, counts and normalised effect of one (variant, axis); verdict None when testable."""
    e = {"metric": metric, "baseline": None, "variant": None, "random": None, "delta": None, "ci95": None,
         "normalised": None, "verdict": None, "n_models": 0, "n_seeds": None, "n_models_baseline": 0,
         "p": None, "p_holm": None, "n_tests": None, "note": ""}  # fmt: skip
    try:
        gv, gb = (
            _Group(groups[variant][axis], f"{variant}/{axis}"),
            _Group(groups[baseline][axis], f"{baseline}/{axis}"),
        )
    except KeyError:
        missing = variant if axis not in groups[variant] else baseline
        return {**e, "verdict": NOT_MEASURED, "note": f"{missing} has no values for {axis}."}
    except DataError as err:
        return {**e, "verdict": NOT_MEASURED, "note": str(err)}
    e.update(baseline=gb.estimate(), variant=gv.estimate(), n_models=gv.n_models, n_seeds=gv.n_seeds)
    e.update(delta=e["variant"] - e["baseline"], n_models_baseline=gb.n_models)
    e["normalised"], e["random"], e["note"] = _normalised(groups, variant, axis, random, e["variant"], e["baseline"])
    if min(gv.n_models, gb.n_models) < max(2, min_models):
        short = [
            f"{name} has {g.n_models}" for name, g in ((variant, gv), (baseline, gb)) if g.n_models < max(2, min_models)
        ]
        e["verdict"] = NOT_ENOUGH_SEEDS
        e["note"] = _join(
            f"No interval for {axis}: {' and '.join(short)} model seed(s), and an interval needs at least "
            f"{max(2, min_models)} model seeds per group (train more with `saekit model train --seed S`).",
            e["note"],
        )
    return e


def _normalised(groups, variant, axis, random, v_est, b_est) -> tuple[float | None, float | None, str]:
    """(variant - random) / (baseline - random), the random estimate, and a note when undefined."""
    if random not in groups:
        return None, None, f"No random control group ({random!r}) in this run, so no normalised effect."
    try:
        r_est = _Group(groups[random][axis], f"{random}/{axis}").estimate()
    except KeyError:
        return None, None, f"The random control has no values for {axis}, so no normalised effect."
    except DataError as err:
        return None, None, f"No normalised effect: {err}"
    if abs(b_est - r_est) <= 1e-12 * max(1.0, abs(b_est), abs(r_est)):
        return None, r_est, f"Baseline and random control score the same on {axis}, so no normalised effect."
    note = "The random control itself (normalised 0 by construction)." if variant == random else ""
    return (v_est - r_est) / (b_est - r_est), r_est, note


def mean_t_interval(values: Any, level: float = 0.95, bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean of ``values`` (one per seed) with Student's t interval: mean ± t_{n-1} · sd / √n.

    With one value the interval is that value's point (``lo`` = ``hi`` = None: no spread to say);
    non-finite values are left out. ``bounds`` clips the interval to the values a quantity can take
    (a count ≥ 0, a fraction in [0, 1]). Returns {"mean", "lo", "hi", "n", "level", "values"}.
    """
    v = np.asarray([float(x) for x in values if x is not None and np.isfinite(float(x))], dtype=float)
    out: dict[str, Any] = {"mean": None, "lo": None, "hi": None, "n": int(v.size), "level": level, "values": v.tolist()}
    if v.size == 0:
        return out
    out["mean"] = float(v.mean())
    if v.size >= 2:
        half = float(sps.t.ppf((1 + level) / 2, v.size - 1)) * float(v.std(ddof=1)) / np.sqrt(v.size)
        out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
        if bounds is not None:
            out["lo"], out["hi"] = max(out["lo"], bounds[0]), min(out["hi"], bounds[1])
    return out
