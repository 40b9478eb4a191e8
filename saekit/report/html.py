"""A self-contained HTML report of a comparison (results.json): tables, embedded PNG plots, latents.

The page is ``templates/report.html.j2`` rendered by Jinja2 with autoescape on; this module only
turns results.json into the values the template shows (formatted numbers, table rows, plots).
"""

from __future__ import annotations

import datetime
import math
from typing import Any
from urllib.parse import quote

import numpy as np

from saekit.report import plots
from saekit.report.crosscoder import comparison_section as crosscoder_section
from saekit.report.editing import comparison_section as editing_section
from saekit.report.priors import prior_section
from saekit.report.templating import environment, fmt

_f = fmt


def _s(x: Any) -> str:
    return "None" if x is None else str(x)


def _mean_sd(vals: list[Any], digits: int = 3) -> str:
    v = [float(x) for x in vals if x is not None and math.isfinite(float(x))]
    if not v:
        return "–"
    if len(v) == 1:
        return _f(v[0], digits)
    return f"{np.mean(v):.{digits}f} ± {np.std(v):.{digits}f}"


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> dict[str, Any]:
    """A table for the template: cells are strings, or {"text", "bold", "color", "cls"} mappings."""
    return {"header": header, "rows": rows, "left": left}


_SUMMARY_KEYS = [
    ("L0", "l0", 1),
    ("FVU", "fvu", 3),
    ("cos(x, x̂)", "cosine", 3),
    ("shrinkage", "shrinkage", 3),
    ("CE rec. (zero)", "ce_loss_recovered", 3),
    ("CE rec. (mean)", "ce_loss_recovered_mean_ablation", 3),
    ("KL", "kl_div", 4),
    ("Δ loss", "delta_loss", 4),
    ("dead", "dead_fraction", 3),
    ("dense", "dense_fraction", 3),
    ("pairs cos<-0.9", "opposing_pairs_lt_0.9", 0),
]


def _summary_table(results: dict) -> dict[str, Any]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in results["dictionaries"]:
        groups.setdefault((rec["variant"], rec["dict"]), []).append(rec)
    rows = []
    for (v, d), recs in groups.items():
        row = [v, d] + [_mean_sd([r["metrics"].get(k) for r in recs], digits) for _, k, digits in _SUMMARY_KEYS]
        row.append(_mean_sd([r["autointerp"]["f1"]["mean"] for r in recs]))
        row.append(_mean_sd([r["autointerp"]["token_entropy"]["mean"] for r in recs], 2))
        rows.append(row)
    header = ["variant", "dictionary"] + [k[0] for k in _SUMMARY_KEYS] + ["auto-interp F1", "token entropy (bits)"]
    return _table(header, rows, left=2)


_MATCH_GETTERS = [
    ("decoder MMCS", lambda r, i7: r["decoder"]["mmcs"]),
    ("Hungarian cos", lambda r, i7: r["decoder"]["hungarian_mean_cos"]),
    ("shared @ 0.7", lambda r, i7: r["decoder"]["shared_fraction"][i7]),
    ("act. corr.", lambda r, i7: r.get("act_corr_mean")),
]


def _matching_table(m: dict) -> dict[str, Any]:
    """One row per pair of variants: each figure beside the two variants' seed noise floors."""
    t = m["chance"]["thresholds"]
    i7 = min(range(len(t)), key=lambda i: abs(t[i] - 0.7))
    floor = m["noise_floor"]
    enc = lambda r: r.get("encoder", {}).get("mmcs")  # noqa: E731
    rows = []
    for r in m["cross"]:
        a, b = r["a"], r["b"]
        row: list[Any] = [f"{a} vs {b}"]
        for _, get in _MATCH_GETTERS:
            row += [{"text": _f(get(r, i7)), "bold": True}, f"{_f(get(floor[a], i7))} / {_f(get(floor[b], i7))}"]
        rows.append(row + [f"{_f(enc(r))} ({_f(enc(floor[a]))} / {_f(enc(floor[b]))})"])
    if not m["cross"]:
        for v, r in floor.items():
            row = [f"{v} (seeds only)"]
            for _, get in _MATCH_GETTERS:
                row += ["–", _f(get(r, i7))]
            rows.append(row + [f"– ({_f(enc(r))})"])
    c = m["chance"]
    rows.append(
        ["chance (random dictionaries)", _f(c["mmcs"]), "", _f(c["hungarian_mean_cos"]), "",
         _f(c["shared_fraction"][i7]), "", "–", "", "–"]
    )  # fmt: skip
    header = ["pair A vs B"] + [h for label, _ in _MATCH_GETTERS for h in (label, "floor A / B")]
    return _table(header + ["encoder MMCS (floor A / B)"], rows)


def _cross_app_table(table: dict) -> dict[str, Any]:
    cols = list(table)
    rows = [[a] + [_f(table[a][b]["fvu"]) for b in cols] for a in cols]
    return _table(["dictionary of ↓ on activations of →"] + cols, rows)


def _context(ctx: dict) -> list[dict[str, Any]]:
    """Tokens of one context with their activation as a background alpha (the maximum outlined)."""
    vmax = max(max(ctx["acts"]), 1e-9)
    return [
        {
            "text": tok.replace("\n", "↵").replace("\t", "⇥"),  # one context stays on one line
            "alpha": f"{min(1.0, a / vmax) if a > 0 else 0.0:.2f}",
            "title": f"{a:.3f}" if a > 0 else "",
            "focus": i == ctx["focus"],
        }
        for i, (tok, a) in enumerate(zip(ctx["text"], ctx["acts"]))
    ]


def _examples(results: dict, colors: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "color": colors.get(ex["variant"], "#888"),
            "variant": ex["variant"],
            "dict": ex["dict"],
            "latent": ex["latent"],
            "f1": _f(ex["f1"], 2),
            "precision": _f(ex["precision"], 2),
            "recall": _f(ex["recall"], 2),
            "token_entropy": _f(ex["token_entropy"], 2),
            "explanation": ex["explanation"],
            "lens": ", ".join(repr(t) for t in ex.get("logit_lens", [])[:6]),
            "contexts": [_context(c) for c in ex["contexts"]],
        }
        for ex in results.get("examples", [])
    ]


def _model_tables(results: dict, colors: dict[str, str]) -> tuple[dict, dict]:
    vrows = []
    for v, info in results["variants"].items():
        i = info.get("info") or {}
        vrows.append(
            [{"text": v, "color": colors.get(v, "#888")}, _s(i.get("coef")), _f(i.get("val_loss")),
             _f(i.get("mlp_zero_fraction")), info.get("path", "")]
        )  # fmt: skip
    variants = _table(["variant", "coef", "val loss (training)", "MLP zeros", "folder"], vrows)
    drows = [
        [n, c["kind"], c["hook_name"], _s(c["n_latents"]), _s(c.get("k")), _s(c.get("transcoder"))]
        for n, c in results["settings"]["dictionaries"].items()
    ]
    return variants, _table(["dictionary", "kind", "hook (input)", "latents", "k", "transcoder"], drows)


def _plots(results: dict, names: list[str]) -> dict[str, Any]:
    bins_f1, bins_entropy = np.linspace(0, 1, 21), np.linspace(0, 10, 21)
    return {
        "lm_cost": plots.lm_loss_cost(results),
        "l0_fvu": plots.scatter_l0(results, "fvu", "FVU (lower is better)"),
        "l0_ce": plots.scatter_l0(results, "ce_loss_recovered", "CE loss recovered (zero abl.)"),
        "density": [(n, plots.density_histograms(results, n)) for n in names],
        "autointerp": [
            (
                n,
                plots.score_distributions(results, n, "f1_values", "n-gram explanation F1 (held-out)", bins_f1),
                plots.score_distributions(
                    results, n, "token_entropy_values", "activating-token entropy (bits)", bins_entropy
                ),
            )
            for n in names
        ],
    }


def _probe_sections(results: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"splitting": None, "synthetic": None}
    if results.get("feature_splitting"):
        rows = [
            [v, _s(f["narrow_n_latents"]), _s(f["wide_n_latents"]), _f(f["split_fraction"]),
             _f(f["unmatched_wide_fraction"]), _f(f["parent_child_sum_cos"])]
            for v, f in results["feature_splitting"].items()
        ]  # fmt: skip
        header = ["variant", "narrow", "wide", "split fraction", "unmatched wide", "cos(parent, Σ children)"]
        out["splitting"] = _table(header, rows)
    if results.get("synthetic"):
        sy = results["synthetic"]
        out["synthetic"] = {
            **{k: sy[k] for k in ("k", "n_latents", "n_features", "d", "threshold")},
            "mmcs": _f(sy["mmcs_true_to_learned"]),
            "recovered": _f(sy["recovered_fraction"]),
        }
    return out


VERDICT_AXES = [
    "reconstruction", "ce_loss_recovered", "explainability", "abstractness", "abstractness_last_two",
    "consistency", "neuron_alignment", "neuron_abstractness", "neuron_explainability", "lm_cost", "editability",
    "editability_units_to_half", "editability_selectivity_auc", "editability_steering_efficiency",
    "neuron_editability_units_to_half", "neuron_editability_selectivity_auc", "neuron_editability_steering_efficiency",
    "ground_truth",
]  # fmt: skip


def _verdict_cell(rec: dict | None) -> Any:
    if rec is None:
        return "–"
    verdict = rec.get("verdict") or "–"
    text = verdict if rec.get("delta") is None else f"{verdict}: Δ {_f(rec['delta'])}"
    if rec.get("ci95"):
        lo, hi = rec["ci95"]
        text += f" [{_f(lo)}, {_f(hi)}]"
    cls = {"better": "better", "worse": "worse", "withheld": "withheld"}.get(verdict, "nodiff")
    return {"text": text, "cls": cls}


def _verdict_section(results: dict) -> dict[str, Any] | None:
    """The answer first: variant × axis, coloured by verdict; the forest plot; every note said once."""
    verdicts = results.get("verdicts")
    if not verdicts:
        return (
            {"table": None, "plot": None, "notes": [results["verdicts_note"]]} if results.get("verdicts_note") else None
        )
    axes = [a for a in VERDICT_AXES if any(a in pa for pd in verdicts.values() for pa in pd.values())]
    if "editability_units_to_half" in axes:  # the three measures side by side; the headline is one of them
        axes.remove("editability")
    rows, notes = [], []
    for v, per_dict in verdicts.items():
        for d, per_axis in per_dict.items():
            rec0 = next(iter(per_axis.values()))
            rows.append(
                [v, d, f"{rec0.get('n_models')} × {rec0.get('n_seeds')}"]
                + [_verdict_cell(per_axis.get(a)) for a in axes]
            )
            notes += [f"{v} / {d} / {a}: {r['note']}" for a, r in per_axis.items() if r.get("note")]
    conv = [
        f"{c['dict']}: not converged — dictionaries of one model disagree (baseline seeds share "
        f"{_f(c['consistency'])} of latents, chance {_f(c['chance'])}; mean Hungarian cos {_f(c.get('mean_cos'))}, "
        f"chance {_f(c.get('chance_cos'))}; {c.get('rule', 'see docs/comparing.md')}): train longer, narrower or with smaller batches; "
        "no better/worse verdict on matching-based axes."
        for c in (results.get("convergence") or {}).values()
        if not c.get("converged")
    ]
    header = ["variant", "dictionary", "models × seeds"] + axes
    return {
        "table": _table(header, rows, left=3),
        "plot": plots.forest_plot(verdicts, axes),
        "notes": notes,
        "convergence": conv,
    }


def _browser_links(results: dict, links_from: str) -> list[dict[str, Any]]:
    """Per dictionary config: its feature browser and a link to each model's dictionary in it."""
    out = []
    for d, rec in (results.get("browsers") or {}).items():
        index = links_from + rec["index"]
        links = [{"model": m, "href": f"{index}#dict={quote(n)}"} for m, n in rec["names"].items()]
        out.append({"dict": d, "seed": rec.get("seed"), "index": index, "links": links})
    return out


def _link_examples(examples: list[dict], results: dict, links_from: str) -> None:
    """Each example latent of a browsed dictionary links to its page in the browser."""
    browsers = results.get("browsers") or {}
    for ex in examples:
        rec = browsers.get(ex["dict"])
        name = rec and rec["names"].get(ex["variant"])
        if name:
            ex["browse"] = f"{links_from}{rec['index']}#dict={quote(name)}&open={ex['latent']}"


def render_html(
    results: dict[str, Any], title: str = "saekit: dictionaries across model variants", links_from: str = ""
) -> str:
    """The report as one HTML string (images embedded as data URIs; no external files but the feature
    browsers it links, whose run-folder paths get ``links_from`` in front: the run folder seen from the report)."""
    s = results["settings"]
    variants = plots.variant_order(results)
    colors = plots.variant_colors(variants)
    names = plots.dict_order(results)
    variant_table, dict_table = _model_tables(results, colors)
    total = results.get("timing_s", {}).get("total")
    examples = _examples(results, colors)
    _link_examples(examples, results, links_from)
    context = {
        "title": title,
        "now": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "n_variants": len(variants),
        "n_dicts": len(names),
        "n_seeds": len(s["seeds"]),
        "train_tokens": f"{s['train_tokens']:,}",
        "eval_tokens": f"{s['eval_tokens']:,}",
        "verdicts": _verdict_section(results),
        "variants": variant_table,
        "dictionaries": dict_table,
        "summary": _summary_table(results),
        "plots": _plots(results, names),
        "matching": [
            {"name": n, "plot": plots.matching_curves(results, n), "table": _matching_table(results["matching"][n])}
            for n in names
        ],
        "cross_application": [(n, _cross_app_table(results["cross_application"][n])) for n in names],
        **_probe_sections(results),
        "priors": prior_section(results),
        "examples": examples,
        "browsers": _browser_links(results, links_from),
        "editing": editing_section(results, colors),
        "crosscoders": crosscoder_section(results),
        "wall_time": f"{total:.0f}" if total else None,
    }
    return environment().get_template("report.html.j2").render(**context)
