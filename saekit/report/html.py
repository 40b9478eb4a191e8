"""A self-contained HTML report of a comparison (results.json): tables, embedded PNG plots, latents."""

from __future__ import annotations

import datetime
import html
import math
from typing import Any

import numpy as np

from saekit.report import plots

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:24px auto;
padding:0 16px;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:34px}
table{border-collapse:collapse;font-size:0.84em;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f4f4f6}td.l,th.l{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0}.note{color:#555;font-size:0.88em}
.ctx{font-family:ui-monospace,Menlo,monospace;font-size:0.82em;white-space:pre-wrap;margin:0;padding:2px 0;
border-top:1px dotted #ddd}
.tok{border-radius:2px}.focus{outline:1px solid #c0392b}
.latent{border:1px solid #e3e3e3;border-radius:6px;padding:8px 10px;margin:8px 0}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
"""

# marks the page once every image has decoded, so a headless browser can check the report
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}f}"


def _mean_sd(vals: list[Any], digits: int = 3) -> str:
    v = [float(x) for x in vals if x is not None and math.isfinite(float(x))]
    if not v:
        return "–"
    if len(v) == 1:
        return _f(v[0], digits)
    return f"{np.mean(v):.{digits}f} ± {np.std(v):.{digits}f}"


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f'<div style="overflow-x:auto"><table><tr>{th}</tr>{body}</table></div>'


def _img(uri: str, alt: str) -> str:
    return f'<figure><img src="{uri}" alt="{_e(alt)}"></figure>'


def _summary_table(results: dict) -> str:
    keys = [
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
    rows = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in results["dictionaries"]:
        groups.setdefault((rec["variant"], rec["dict"]), []).append(rec)
    for (v, d), recs in groups.items():
        row = [_e(v), _e(d)]
        for _, k, digits in keys:
            row.append(_mean_sd([r["metrics"].get(k) for r in recs], digits))
        row.append(_mean_sd([r["autointerp"]["f1"]["mean"] for r in recs]))
        row.append(_mean_sd([r["autointerp"]["token_entropy"]["mean"] for r in recs], 2))
        rows.append(row)
    header = ["variant", "dictionary"] + [k[0] for k in keys] + ["auto-interp F1", "token entropy (bits)"]
    return _table(header, rows, left=2)


def _matching_table(results: dict, name: str) -> str:
    """One row per pair of variants: each figure beside the two variants' seed noise floors."""
    m = results["matching"][name]
    t = m["chance"]["thresholds"]
    i7 = min(range(len(t)), key=lambda i: abs(t[i] - 0.7))
    floor = m["noise_floor"]
    getters = [
        ("decoder MMCS", lambda r: r["decoder"]["mmcs"]),
        ("Hungarian cos", lambda r: r["decoder"]["hungarian_mean_cos"]),
        ("shared @ 0.7", lambda r: r["decoder"]["shared_fraction"][i7]),
        ("act. corr.", lambda r: r.get("act_corr_mean")),
    ]
    enc = lambda r: r.get("encoder", {}).get("mmcs")  # noqa: E731
    rows = []
    pairs = [(r["a"], r["b"], r) for r in m["cross"]]
    for a, b, r in pairs:
        row = [_e(f"{a} vs {b}")]
        for _, get in getters:
            row += [f"<b>{_f(get(r))}</b>", f"{_f(get(floor[a]))} / {_f(get(floor[b]))}"]
        rows.append(row + [f"{_f(enc(r))} ({_f(enc(floor[a]))} / {_f(enc(floor[b]))})"])
    if not pairs:
        for v, r in floor.items():
            row = [_e(f"{v} (seeds only)")]
            for _, get in getters:
                row += ["–", f"{_f(get(r))}"]
            rows.append(row + [f"– ({_f(enc(r))})"])
    c = m["chance"]
    rows.append(
        [
            _e("chance (random dictionaries)"),
            _f(c["mmcs"]),
            "",
            _f(c["hungarian_mean_cos"]),
            "",
            _f(c["shared_fraction"][i7]),
            "",
            "–",
            "",
            "–",
        ]
    )
    header = ["pair A vs B"]
    for label, _ in getters:
        header += [label, "floor A / B"]
    return _table(header + ["encoder MMCS (floor A / B)"], rows)


def _cross_app_table(results: dict, name: str) -> str:
    table = results["cross_application"][name]
    cols = list(table)
    rows = [[_e(a)] + [_f(table[a][b]["fvu"]) for b in cols] for a in cols]
    return _table(["dictionary of ↓ on activations of →"] + cols, rows)


def _highlight(ctx: dict) -> str:
    vmax = max(max(ctx["acts"]), 1e-9)
    out = []
    for i, (tok, a) in enumerate(zip(ctx["text"], ctx["acts"])):
        alpha = min(1.0, a / vmax) if a > 0 else 0.0
        cls = "tok focus" if i == ctx["focus"] else "tok"
        title = f' title="{a:.3f}"' if a > 0 else ""
        shown = tok.replace("\n", "↵").replace("\t", "⇥")  # one context stays on one line
        out.append(f'<span class="{cls}" style="background:rgba(255,140,0,{alpha:.2f})"{title}>{_e(shown)}</span>')
    return f'<div class="ctx">{"".join(out)}</div>'


def _examples(results: dict, colors: dict[str, str]) -> str:
    parts = []
    for ex in results.get("examples", []):
        lens = ", ".join(repr(t) for t in ex.get("logit_lens", [])[:6])
        head = (
            f'<span class="dot" style="background:{colors.get(ex["variant"], "#888")}"></span>'
            f"<b>{_e(ex['variant'])}</b> / {_e(ex['dict'])} / latent {ex['latent']} — "
            f"F1 {_f(ex['f1'], 2)} (precision {_f(ex['precision'], 2)}, recall {_f(ex['recall'], 2)}), "
            f"token entropy {_f(ex['token_entropy'], 2)} bits"
        )
        body = f'<div class="note">explanation: {_e(ex["explanation"])}</div>'
        if lens:
            body += f'<div class="note">logit lens: {_e(lens)}</div>'
        body += "".join(_highlight(c) for c in ex["contexts"])
        parts.append(f'<div class="latent">{head}{body}</div>')
    return "".join(parts) or "<p>No example latents.</p>"


def render_html(results: dict[str, Any], title: str = "saekit: dictionaries across model variants") -> str:
    """The report as one HTML string (images embedded as data URIs; no external files)."""
    s = results["settings"]
    variants = plots.variant_order(results)
    colors = plots.variant_colors(variants)
    names = plots.dict_order(results)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>"
    ]
    out.append(
        f"<h1>{_e(title)}</h1><p class='note'>generated {now}; {len(variants)} variants × "
        f"{len(names)} dictionaries × {len(s['seeds'])} seeds; {s['train_tokens']:,} training tokens, "
        f"{s['eval_tokens']:,} held-out tokens per variant (see docs/comparing.md for how to read it).</p>"
    )
    vrows = []
    for v, info in results["variants"].items():
        i = info.get("info") or {}
        vrows.append(
            [
                f'<span class="dot" style="background:{colors[v]}"></span>{_e(v)}',
                _e(i.get("coef")),
                _f(i.get("val_loss")),
                _f(i.get("mlp_zero_fraction")),
                _e(info.get("path", "")),
            ]
        )
    out.append(
        "<h2>Model variants</h2>" + _table(["variant", "coef", "val loss (training)", "MLP zeros", "folder"], vrows)
    )
    drows = [
        [
            _e(n),
            _e(c["kind"]),
            _e(c["hook_name"]),
            _e(c["n_latents"]),
            _e(c.get("k")),
            _e(c.get("transcoder")),
        ]
        for n, c in s["dictionaries"].items()
    ]
    out.append(_table(["dictionary", "kind", "hook (input)", "latents", "k", "transcoder"], drows))

    out.append("<h2>Summary (mean ± sd over seeds, held-out tokens)</h2>" + _summary_table(results))
    out.append(
        "<p class='note'>CE rec. = (L_ablated − L_spliced)/(L_ablated − L_clean) with zero or mean "
        "ablation of the hookpoint (the MLP output for transcoders); Δ loss = L_spliced − L_clean (nats).</p>"
    )

    out.append(
        "<h2>Cost of each regulariser in LM loss</h2><div class='grid'>"
        + _img(plots.lm_loss_cost(results), "LM loss per variant")
        + "</div>"
    )
    out.append(
        "<h2>Sparsity vs fidelity</h2><div class='grid'>"
        + _img(plots.scatter_l0(results, "fvu", "FVU (lower is better)"), "L0 vs FVU")
        + _img(plots.scatter_l0(results, "ce_loss_recovered", "CE loss recovered (zero abl.)"), "L0 vs CE")
        + "</div>"
    )
    out.append(
        "<h2>Feature density</h2><div class='grid'>"
        + "".join(_img(plots.density_histograms(results, n), f"density {n}") for n in names)
        + "</div>"
    )
    out.append(
        "<h2>Offline auto-interpretation</h2><p class='note'>n-gram explanations learned on training text, "
        "scored on held-out text (F1 of predicted vs actual firing); token entropy of the activating "
        "tokens (0 bits = a single-token feature).</p><div class='grid'>"
    )
    for n in names:
        out.append(
            _img(
                plots.score_distributions(
                    results, n, "f1_values", "n-gram explanation F1 (held-out)", np.linspace(0, 1, 21)
                ),
                f"F1 {n}",
            )
        )
        out.append(
            _img(
                plots.score_distributions(
                    results,
                    n,
                    "token_entropy_values",
                    "activating-token entropy (bits)",
                    np.linspace(0, 10, 21),
                ),
                f"entropy {n}",
            )
        )
    out.append("</div>")
    out.append(
        "<h2>Matching across variants, with the seed noise floor</h2><p class='note'>A cross-variant "
        "figure (bold) means something only where it sits clearly below the noise floor (the same figure "
        "between two seeds of variant A / of variant B) and above chance. The plot shows the pairs with "
        "the first variant; the table has every pair.</p>"
    )
    for n in names:
        out.append(
            f"<h3>{_e(n)}</h3><div class='grid'>{_img(plots.matching_curves(results, n), f'matching {n}')}</div>"
            f"{_matching_table(results, n)}"
        )
    out.append(
        "<h2>Cross-application (FVU)</h2><p class='note'>A dictionary trained on one variant's activations, "
        "evaluated on another's (same architecture, same tokens).</p>"
    )
    for n in names:
        out.append(f"<h3>{_e(n)}</h3>{_cross_app_table(results, n)}")
    if results.get("feature_splitting"):
        rows = [
            [
                _e(v),
                _e(f["narrow_n_latents"]),
                _e(f["wide_n_latents"]),
                _f(f["split_fraction"]),
                _f(f["unmatched_wide_fraction"]),
                _f(f["parent_child_sum_cos"]),
            ]
            for v, f in results["feature_splitting"].items()
        ]
        out.append(
            "<h2>Feature splitting across widths</h2>"
            + _table(
                ["variant", "narrow", "wide", "split fraction", "unmatched wide", "cos(parent, Σ children)"],
                rows,
            )
        )
    if results.get("synthetic"):
        sy = results["synthetic"]
        out.append(
            "<h2>Pipeline check on synthetic ground truth</h2>"
            f"<p>Top-k SAE (k={sy['k']}, {sy['n_latents']} latents) on toy data of {sy['n_features']} known "
            f"sparse features in {sy['d']} dimensions: MMCS of true features to learned decoder rows "
            f"<b>{_f(sy['mmcs_true_to_learned'])}</b>; recovered at cos ≥ {sy['threshold']}: "
            f"<b>{_f(sy['recovered_fraction'])}</b>.</p>"
        )
    out.append("<h2>Example latents (held-out top contexts)</h2>" + _examples(results, colors))
    t = results.get("timing_s", {}).get("total")
    if t:
        out.append(f"<p class='note'>comparison wall time: {t:.0f} s.</p>")
    out.append("</body></html>")
    return "\n".join(out)
