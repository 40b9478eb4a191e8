"""The max-of-K report page: a small Jinja2 template with embedded matplotlib figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jinja2 import Environment

from saekit.fileutil import atomic_write_text
from saekit.report.plots import plt, to_data_uri

LABELS = ("max", "query", "nonmax", "copies", "max_position", "None")

TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>saekit: max-of-K ground truth</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}</style>
</head><body><h1>Max-of-{{ s.k }} ground truth (vocabulary {{ s.vocab }})</h1>
<p>Model: 1 layer, attention only, 1 head, no layer norm, no biases (Gross et al. 2024). Dictionaries: top-k
(k = {{ s.dict_k }}) at widths {{ s.widths|join(', ') }} on the residual stream at the last position (pre-unembed) and on
the logits. A latent is explained by the (label, value) sharing the most mutual information with its firing;
a maximum value has a <em>dedicated</em> latent when a latent explained by it has purity ≥ 0.9.</p>
{% for v, r in variants.items() %}<h2>{{ v }}</h2>
<p>Exhaustive accuracy over all {{ s.vocab }}<sup>{{ s.k }}</sup> inputs: <b>{{ '%.5f'|format(r.model.accuracy) }}</b></p>
<table><tr><th>dictionary</th><th>FVU</th><th>L0</th><th>dedicated max fraction</th>{% for l in labels %}<th>{{ l }}</th>{% endfor %}</tr>
{% for name, d in r.dictionaries.items() %}<tr><td>{{ name }}</td><td>{{ '%.3f'|format(d.fvu) }}</td><td>{{ '%.2f'|format(d.l0) }}</td>
<td>{{ '%.3f'|format(d.dedicated_max_fraction) }}</td>{% for l in labels %}<td>{{ d.latent_label_counts.get(l, 0) }}</td>{% endfor %}</tr>{% endfor %}
</table><p>Label columns: how many latents each label explains best (None: dead).</p>
<h3>Splitting across widths</h3><table><tr><th>widths</th><th>split parents</th><th>separating labels</th>
<th>mean I(child; label)/H(child)</th><th>direction sharing: label, same-value cos vs shuffled</th></tr>
{% for name, t in r.splitting.items() %}<tr><td>{{ name }}</td><td>{{ t.n_split_parents }}</td><td>{{ t.separating_labels }}</td>
<td>{{ '%.2f'|format(t.mean_mi_fraction) if t.mean_mi_fraction is not none else '-' }}</td>
<td>{{ t.direction_sharing.label }}: {{ fmt(t.direction_sharing.same_value_cos) }} vs {{ fmt(t.direction_sharing.shuffled_cos) }}
({{ t.direction_sharing.n_pairs }} pairs)</td></tr>{% endfor %}</table>
{% for title, uri in figures[v] %}<h3>{{ title }}</h3><img src="{{ uri }}" alt="{{ title }}" style="max-width:100%">{% endfor %}
{% endfor %}</body></html>"""


def _fmt(x) -> str:
    return "-" if x is None or x != x else f"{x:.3f}"


def label_bars(r: dict) -> str:
    """Stacked bars: how many latents each label explains, per dictionary."""
    names = list(r["dictionaries"])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bottom = np.zeros(len(names))
    for label in LABELS:
        vals = np.array([r["dictionaries"][n]["latent_label_counts"].get(label, 0) for n in names], dtype=float)
        ax.bar(names, vals, bottom=bottom, label=label)
        bottom += vals
    ax.set_ylabel("latents")
    ax.legend(fontsize=7, ncol=3)
    ax.tick_params(axis="x", rotation=30)
    return to_data_uri(fig)


def purity_map(d: dict, vocab: int, title: str) -> str:
    """Purity of each latent explained by a max value, placed at that value."""
    best = np.zeros(vocab)
    for e in d["latents"]:
        if e["label"] == "max":
            best[e["value"]] = max(best[e["value"]], e["purity"])
    fig, ax = plt.subplots(figsize=(8, 2.4))
    ax.bar(range(vocab), best, color=["tab:green" if b >= 0.9 else "tab:red" for b in best])
    ax.axhline(0.9, color="k", lw=0.8, ls="--")
    ax.set_xlabel("maximum value")
    ax.set_ylabel("best purity")
    ax.set_title(title, fontsize=9)
    return to_data_uri(fig)


def render_max_of_k(results: dict) -> str:
    s = results["settings"]
    figures = {}
    for v, r in results["variants"].items():
        figs = [("Which label explains each latent", label_bars(r))]
        for name, d in r["dictionaries"].items():
            if name.endswith(f"_w{s['vocab']}"):
                figs.append((f"{name}: best purity per maximum value", purity_map(d, s["vocab"], name)))
        figures[v] = figs
    env = Environment(autoescape=True)
    return env.from_string(TEMPLATE).render(s=s, variants=results["variants"], labels=LABELS, figures=figures, fmt=_fmt)


def write_max_of_k_report(results: dict, path: str | Path) -> Path:
    return atomic_write_text(path, render_max_of_k(results))
