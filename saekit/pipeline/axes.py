"""The verdict axes, measured per dictionary (or per model) on held-out tokens.

Per dictionary: ``fvu`` and ``ce_loss_recovered`` (mean ablation) — reconstruction; ``explainability``
(held-out F1 of the n-gram explanations, per latent, over the alive latents auto-interp sampled);
``abstractness`` and ``abstractness_last_two`` (per latent 1 − R² from token ids); ``neuron_alignment``
(MLP-output dictionaries: fraction of alive latents whose decoder row has cos > 0.7 with one
neuron's output row); ``ground_truth`` (models of a planted language only: mean best-latent F1 over
its labels, with the token-level and contextual parts beside it). Per model: ``consistency`` (mean pairwise Hungarian shared fraction at
cos > 0.7 between its dictionary seeds; ``consistency_cos``, their mean Hungarian cosine, beside it), ``neuron_abstractness`` and ``neuron_explainability`` (the abstractness
and n-gram explainability of the model's own MLP neurons, ``hook_post``, for MLP-output dictionaries) and ``lm_loss`` (held-out LM loss; its difference to the
baseline is the ``lm_cost`` axis). Per-latent values stay arrays: the bootstrap resamples latents.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np
import torch

from saekit.evaluation.abstractness import abstractness, previous_token_ids
from saekit.evaluation.autointerp import SparseActs, autointerp
from saekit.evaluation.matching import compare_weights
from saekit.evaluation.neurons import neuron_alignment
from saekit.evaluation.splice import split_hooks
from saekit.pipeline.activations import VariantActivations, rows
from saekit.pipeline.seeds import derive_seed

CONSISTENCY_COS = 0.7
_MLP_OUT = re.compile(r"^blocks\.(\d+)\.hook_mlp_out$")


@torch.no_grad()
def dictionary_axes(
    sae: torch.nn.Module, handle: Any, acts: VariantActivations, eval_tokens: torch.Tensor, metrics: dict,
    ai: dict, seed: int, labels: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Axis values of one dictionary: numbers, or per-latent float arrays (NaN = not scored).

    labels: (held-out labels [n_seq, n_ctx, n_labels], contextual mask) of a planted language."""
    in_hook, out_hook = split_hooks(sae.cfg)
    x = rows(acts.held_out[in_hook])
    p = next(sae.parameters())
    z = torch.cat([sae.encode(x[i : i + 4096].to(p.device, p.dtype)).float().cpu() for i in range(0, len(x), 4096)])
    cur, prev = previous_token_ids(eval_tokens)
    keep = (torch.arange(cur.numel()) % eval_tokens.shape[1]) != 0  # BOS positions are not in x
    ab = abstractness(z, cur[keep], prev[keep], split_seed=seed)
    out: dict[str, Any] = {
        "fvu": metrics.get("fvu"),
        "ce_loss_recovered": metrics.get("ce_loss_recovered_mean_ablation"),
        "explainability": np.asarray(ai.get("f1_values", []), dtype=np.float64),
        "abstractness": ab["current"],
        "abstractness_last_two": ab["last_two"],
    }
    if labels is not None:  # a planted language: codes scored against its labels
        from saekit.evaluation.planted_scores import ground_truth_values

        out.update(ground_truth_values(z, *labels))
    m = _MLP_OUT.match(out_hook or in_hook)
    if m is not None and hasattr(handle.model, "blocks"):
        W_out = handle.model.blocks[int(m.group(1))].mlp.W_out
        alive = (z > 0).any(0)
        out["neuron_alignment"] = neuron_alignment(sae.W_dec, W_out, CONSISTENCY_COS, alive=alive)["fraction"]
    return out


def mlp_post_hook(cfg: Any) -> str | None:
    """``blocks.L.mlp.hook_post`` (the model's own neurons) for a dictionary on ``blocks.L.hook_mlp_out``."""
    in_hook, out_hook = split_hooks(cfg)
    m = _MLP_OUT.match(out_hook or in_hook)
    return f"blocks.{m.group(1)}.mlp.hook_post" if m else None


@torch.no_grad()
def neuron_axes(
    handle: Any, hook: str, explain_tokens: torch.Tensor, eval_tokens: torch.Tensor, seed: int, n_neurons: int = 256,
    label: str = "",
) -> dict[str, np.ndarray]:  # fmt: skip
    """The model's own MLP neurons (``hook``, e.g. ``blocks.L.mlp.hook_post``) scored like latents, per neuron:
    ``neuron_abstractness`` (1 − R² from the current token id, on held-out tokens) and
    ``neuron_explainability`` (held-out F1 of the offline n-gram explanations, learned on ``explain_tokens``,
    for up to ``n_neurons`` neurons that fire there, sampled with ``derive_seed(seed, "neurons", label)``).
    A neuron "fires" where its activation is > 0, as a latent does; BOS positions are left out."""
    from saekit.activations import read_activations

    ev = read_activations(handle, eval_tokens, [hook], progress=False)[hook].float()
    cur, prev = previous_token_ids(eval_tokens)
    keep = (torch.arange(cur.numel()) % eval_tokens.shape[1]) != 0
    out = {"neuron_abstractness": abstractness(rows(ev), cur[keep], prev[keep], split_seed=seed)["current"]}
    tr = read_activations(handle, explain_tokens, [hook], progress=False)[hook].float()
    out["neuron_explainability"] = neuron_f1(tr, explain_tokens, ev, eval_tokens, n_neurons, derive_seed(seed, "neurons", label))
    return out


def neuron_f1(
    acts_train: torch.Tensor, tokens_train: torch.Tensor, acts_eval: torch.Tensor, tokens_eval: torch.Tensor,
    n_neurons: int, seed: int,
) -> np.ndarray:  # fmt: skip
    """Held-out F1 of the n-gram explanations of neurons (activations [n_seq, n_ctx, d_mlp], positive part)."""
    sparse = [_positive_no_bos(a) for a in (acts_train, acts_eval)]
    alive = np.flatnonzero(np.diff(sparse[0].indptr) > 0)
    if not alive.size:
        return np.zeros(0)
    chosen = sorted(np.random.default_rng(seed).choice(alive, size=min(n_neurons, alive.size), replace=False).tolist())
    ai = autointerp(sparse[0], tokens_train, sparse[1], tokens_eval, latents=chosen, seed=seed)
    return np.asarray(ai["f1_values"], dtype=np.float64)


def _positive_no_bos(acts: torch.Tensor) -> SparseActs:
    flat = acts.reshape(-1, acts.shape[-1]).clamp_min(0)
    return SparseActs.from_dense(flat).restrict(np.arange(flat.shape[0]) % acts.shape[1] != 0)


def consistency(decoders: list[torch.Tensor], threshold: float = CONSISTENCY_COS) -> dict[str, float]:
    """Mean over pairs of dictionary seeds of the fraction of latents Hungarian-matched at cos > threshold
    (``consistency``, the axis) and of the mean Hungarian cosine (``consistency_cos``, for the convergence
    rule of ``saekit.evaluation.matching.is_converged``)."""
    pairs = [compare_weights(a, b, (threshold,)) for a, b in itertools.combinations(decoders, 2)]
    if not pairs:
        return {"consistency": float("nan"), "consistency_cos": float("nan")}
    return {
        "consistency": float(np.mean([p["shared_fraction"][0] for p in pairs])),
        "consistency_cos": float(np.mean([p["hungarian_mean_cos"] for p in pairs])),
    }


def summary(axes: dict[str, Any]) -> dict[str, Any]:
    """Axis values for results.json: per-latent arrays summarised by their median over scored latents."""
    out = {}
    for k, v in axes.items():
        if isinstance(v, np.ndarray):
            v = v[~np.isnan(v)]
            out[k] = float(np.median(v)) if v.size else None
        else:
            out[k] = v
    return out
