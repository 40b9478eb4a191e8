"""Dictionaries on models trained on a planted-feature language, scored against its labels."""

from __future__ import annotations

import torch

from saekit.errors import DataError
from saekit.evaluation.ground_truth import recovery_summary


def dataset_labels(dataset: str | None, n_rows: int, n_ctx: int, seed: int = 12345):
    """(tokens, labels [rows, n_ctx, n_labels], contextual mask) of a planted dataset; any other
    dataset has no ground truth to score against."""
    if not dataset or not dataset.startswith("planted:"):
        raise DataError(f"dataset {dataset!r} carries no ground-truth labels; only planted:NAME datasets do.")
    from saekit.data.planted import planted_language

    lang = planted_language(dataset)
    tokens, labels = lang.rows(n_rows, n_ctx, seed)
    return tokens, labels, lang.is_contextual


@torch.no_grad()
def planted_activations(model, tokens: torch.Tensor, labels: torch.Tensor, hook_name: str, batch: int = 32):
    """(activations [n, d], labels [n, n_labels]) at every position that carries a label."""
    acts = []
    for i in range(0, len(tokens), batch):
        _, cache = model.run_with_cache(tokens[i : i + batch], names_filter=hook_name)
        acts.append(cache[hook_name])
    acts_t = torch.cat(acts).flatten(0, 1)
    flat = labels.flatten(0, 1)
    keep = flat.any(1)
    return acts_t[keep], flat[keep]


@torch.no_grad()
def planted_scores(sae, model, hook_name: str, dataset: str, n_rows: int = 256, seed: int = 12345) -> dict:
    """Recovery of token-level and contextual labels by one dictionary (see recovery_summary)."""
    tokens, labels, contextual = dataset_labels(dataset, n_rows, model.cfg.n_ctx, seed)
    x, y = planted_activations(model, tokens, labels, hook_name)
    return recovery_summary(sae.encode(x), y, contextual)


def ground_truth_values(z: torch.Tensor, labels: torch.Tensor, contextual: torch.Tensor) -> dict[str, float | None]:
    """The ``ground_truth`` axis of one dictionary and its parts, from its codes on held-out rows.

    z: codes [n_seq * (n_ctx - 1), n_latents] of every position but BOS (as the pipeline holds them);
    labels: [n_seq, n_ctx, n_labels]. Positions without any label (EOS) are left out. ``ground_truth``
    is the mean best-latent F1 over all labels present; the parts are per label kind."""
    y = labels[:, 1:].flatten(0, 1)
    keep = y.any(1)
    s = recovery_summary(z[keep], y[keep], contextual)
    values = [v for kind in s.values() for v in [kind["mean_best_f1"]] * kind["n_labels"] if v is not None]
    out: dict[str, float | None] = {"ground_truth": sum(values) / len(values) if values else None}
    for kind, short in (("token_level", "token"), ("contextual", "context")):
        out[f"ground_truth_{short}_f1"] = s[kind]["mean_best_f1"]
        out[f"ground_truth_{short}_recovered"] = s[kind]["recovered_fraction"]
    return out


def ground_truth_axis(sae, model, hook_name: str, dataset: str, n_rows: int = 256, seed: int = 12345) -> float:
    """One number per dictionary for the verdict table: mean best-latent F1 over all planted labels."""
    s = planted_scores(sae, model, hook_name, dataset, n_rows, seed)
    kinds = [k for k in s.values() if k["n_labels"]]
    return sum(k["mean_best_f1"] * k["n_labels"] for k in kinds) / sum(k["n_labels"] for k in kinds)
