"""Per-latent data in the batch layout SAEDashboard's ``NeuronpediaRunner`` writes (``batch-<i>.json``),
which Neuronpedia's converter (``convert-saedashboard-to-neuronpedia-export.py``) turns into an import.

The layout follows the public ``NeuronpediaDashboardBatch`` / ``NeuronpediaDashboardFeature`` /
``NeuronpediaDashboardActivation.to_dict`` of SAEDashboard (sae_dashboard/neuronpedia/neuronpedia_dashboard.py)::

    {"model_id", "layer", "sae_set", "sae_id_suffix", "features": [
        {"feature_index", "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
         "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
         "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
         "neg_str", "neg_values", "pos_str", "pos_values", "frac_nonzero",
         "freq_hist_data_bar_values", "freq_hist_data_bar_heights",
         "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
         "n_prompts_total", "n_tokens_in_prompt", "dataset", "decoder_weights_dist",
         "activations": [{"bin_min", "bin_max", "bin_contains", "tokens", "values", "qualifying_token_index"}]}]}

What saekit fills: logit effects (pos/neg), firing density (frac_nonzero), the activation histogram
(bar values = bin centres, heights = counts), the logit-effect histogram over the vocabulary, and
the top-activating contexts as SAEDashboard's "top activations" group (bin_min -1, bin_max the
latent's max, bin_contains -1). Left empty (saekit does not compute them): neuron alignment,
correlated neurons and features, decoder_weights_dist (attention heads), and SAEDashboard's interval
groups (saekit keeps quantile samples instead, which do not map onto its interval bins).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saekit.errors import ConfigError
from saekit.fileutil import atomic_write_json

MANIFEST = "saekit_neuronpedia.json"
FEATURES_PER_BATCH = 128
LOGIT_BINS = 40


def check_neuronpedia_output(out: str | Path, overwrite: bool) -> Path:
    """A new or empty folder, or one saekit's export wrote before (replaced only with overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--neuronpedia-out {out} is a file; give a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise ConfigError(f"--neuronpedia-out {out} holds files saekit did not write; give an empty or new folder.")
        if not overwrite:
            raise ConfigError(f"--neuronpedia-out {out} holds an export already; pass --overwrite to replace it.")
        listed = set(json.loads((out / MANIFEST).read_text()).get("files", [])) | {MANIFEST}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in listed)
        if foreign:
            raise ConfigError(f"--neuronpedia-out {out} holds files saekit did not write (e.g. {foreign[0]}); nothing replaced.")
    return out


def _layer(hook: str) -> int:
    m = re.match(r"^blocks\.(\d+)\.", hook)
    return int(m.group(1)) if m else 0


def _logit_hist(data: Any, i: int) -> tuple[list[float], list[float]]:
    """Histogram of latent i's effect W_dec[i] · W_U over the vocabulary (bar centres, counts)."""
    if data.W_U is None or data.sae.W_dec.shape[1] != data.W_U.shape[0]:
        return [], []
    eff = (data.sae.W_dec[i].detach().float().cpu() @ data.W_U).numpy()
    counts, edges = np.histogram(eff, bins=LOGIT_BINS)
    return [round(float(c), 4) for c in (edges[:-1] + edges[1:]) / 2], [float(c) for c in counts]


def feature_record(data: Any, i: int, details: dict, decode: Callable[[int], str], meta: dict) -> dict[str, Any]:
    """One latent as a NeuronpediaDashboardFeature dict (``details``: feature_data.latent_details)."""
    edges = np.linspace(0.0, details["hist"]["edges_top"], len(details["hist"]["counts"]) + 1)
    logits = details.get("logits") or {}
    lv, lh = _logit_hist(data, i)
    acts = [
        {"bin_min": -1, "bin_max": details["max"], "bin_contains": -1, "tokens": [decode(t) for t in c["tokens"]],
         "values": c["acts"], "qualifying_token_index": c["focus"]}
        for c in details["top"]
    ]  # fmt: skip
    return {
        "feature_index": i,
        **{k: [] for k in ("neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
                           "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
                           "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson")},
        "neg_str": [decode(t) for t, _ in logits.get("down", [])],
        "neg_values": [v for _, v in logits.get("down", [])],
        "pos_str": [decode(t) for t, _ in logits.get("up", [])],
        "pos_values": [v for _, v in logits.get("up", [])],
        "frac_nonzero": details["density"] or 0.0,
        "freq_hist_data_bar_values": [round(float(c), 4) for c in (edges[:-1] + edges[1:]) / 2],
        "freq_hist_data_bar_heights": [float(c) for c in details["hist"]["counts"]],
        "logits_hist_data_bar_heights": lh,
        "logits_hist_data_bar_values": lv,
        "n_prompts_total": meta["n_prompts_total"],
        "n_tokens_in_prompt": meta["n_tokens_in_prompt"],
        "dataset": meta["dataset"],
        "decoder_weights_dist": [],
        "activations": acts,
    }  # fmt: skip


@torch.no_grad()
def write_neuronpedia(
    out: Path, data: Any, details: Callable[[int], dict], decode: Callable[[int], str], hook: str,
    model_id: str, sae_set: str, dataset: str,
) -> list[str]:  # fmt: skip
    """Write OUT/batch-<i>.json (FEATURES_PER_BATCH latents each) and the manifest; returns the file names."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"n_prompts_total": int(data.tokens.shape[0]), "n_tokens_in_prompt": int(data.tokens.shape[1]),
            "dataset": dataset}  # fmt: skip
    n = int(data.sae.W_dec.shape[0])
    files = []
    for b, start in enumerate(range(0, n, FEATURES_PER_BATCH)):
        feats = [feature_record(data, i, details(i), decode, meta) for i in range(start, min(n, start + FEATURES_PER_BATCH))]
        batch = {"model_id": model_id, "layer": _layer(hook), "sae_set": sae_set, "sae_id_suffix": "", "features": feats}
        name = f"batch-{b}.json"
        atomic_write_json(out / name, batch)
        files.append(name)
    for old in json.loads((out / MANIFEST).read_text()).get("files", []) if (out / MANIFEST).is_file() else []:
        if old not in files and (out / old).is_file():
            (out / old).unlink()  # a batch of an earlier, larger export that this one does not rewrite
    atomic_write_json(out / MANIFEST, {"tool": "saekit browse --neuronpedia-out", "files": files, "hook": hook})
    return files
