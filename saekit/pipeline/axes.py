"""The verdict axes, measured per dictionary (or per model) on held-out tokens.

Per dictionary: ``fvu`` and ``ce_loss_recovered`` (mean ablation) — reconstruction; ``explainability``
(held-out F1 of the n-gram explanations, per latent, over the alive latents auto-interp sampled);
``abstractness`` and ``abstractness_last_two`` (per latent 1 − R² from token ids); ``neuron_alignment``
(MLP-output dictionaries: fraction of alive latents whose decoder row has cos > 0.7 with one
neuron's output row). Per model: ``consistency`` (mean pairwise Hungarian shared fraction at
cos > 0.7 between its dictionary seeds; ``consistency_cos``, their mean Hungarian cosine, beside it), ``neuron_abstractness`` (the abstractness of the model's own
MLP neurons, ``hook_post``, for MLP-output dictionaries) and ``lm_loss`` (held-out LM loss; its difference to the
baseline is the ``lm_cost`` axis). Per-latent values stay arrays: the bootstrap resamples latents.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np
import torch

from saekit.evaluation.abstractness import abstractness, previous_token_ids
from saekit.evaluation.matching import compare_weights
from saekit.evaluation.neurons import neuron_alignment
from saekit.evaluation.splice import split_hooks
from saekit.pipeline.activations import VariantActivations, rows

CONSISTENCY_COS = 0.7
_MLP_OUT = re.compile(r"^blocks\.(\d+)\.hook_mlp_out$")


@torch.no_grad()
def dictionary_axes(
    sae: torch.nn.Module, handle: Any, acts: VariantActivations, eval_tokens: torch.Tensor, metrics: dict,
    ai: dict, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """Axis values of one dictionary: numbers, or per-latent float arrays (NaN = not scored)."""
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
def neuron_abstractness(handle: Any, hook: str, eval_tokens: torch.Tensor, seed: int) -> np.ndarray:
    """Per neuron 1 − R² from the current token id of the model's own MLP neurons, on held-out tokens."""
    from saekit.activations import read_activations

    acts = read_activations(handle, eval_tokens, [hook], progress=False)[hook]
    cur, prev = previous_token_ids(eval_tokens)
    keep = (torch.arange(cur.numel()) % eval_tokens.shape[1]) != 0
    return abstractness(rows(acts), cur[keep], prev[keep], split_seed=seed)["current"]


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
