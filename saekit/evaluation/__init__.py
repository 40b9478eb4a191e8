"""saekit.evaluation: metrics, splicing into the model, offline auto-interpretation, dictionary matching.

``evaluate(sae, source, model=None)`` is the one-call entry point; the modules hold the pieces:
metrics (reconstruction and sparsity), splice (CE loss recovered, KL), autointerp (n-gram
explanations, token entropy, logit lens), matching (MMCS, Hungarian, activation correlation),
probes (opposing pairs, feature splitting, synthetic ground truth). A leaf library: it imports no
trainer, no report and no pipeline (the comparison across variants is ``saekit.pipeline``).
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.errors import ConfigError
from saekit.evaluation.crosscoder import crosscoder_sharing, firing_density, latent_scaling
from saekit.evaluation.crosscoder_metrics import crosscoder_metrics
from saekit.evaluation.matching import compare_dictionaries
from saekit.evaluation.metrics import dictionary_metrics
from saekit.evaluation.splice import splice_metrics

__all__ = ["evaluate", "compare_dictionaries", "crosscoder_metrics", "crosscoder_sharing", "firing_density", "latent_scaling", "dictionary_metrics", "splice_metrics"]


def evaluate(
    sae: torch.nn.Module,
    source: Any,
    model: Any = None,
    tokens: torch.Tensor | None = None,
    hook_name: str | None = None,
    out_hook_name: str | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = None,
    splice_batch_size: int = 16,
    skip_bos: bool = True,
    include_density: bool = False,
) -> dict[str, Any]:
    """Core metrics of ``sae`` on held-out activations ``source``; with ``model``, also the splice metrics.

    source: a Tensor [N, d_in], an (X, Y) pair for transcoders, or an activation source.
    model + tokens [n_seq, n_ctx]: CE loss recovered (zero and mean ablation), KL and Δ loss. When
    tokens is None the source's own token ids (``source.tokens``) are used if it has them.
    A crosscoder (``n_sources`` ≥ 2) takes a Tensor [N, M, d] or {source name: Tensor [N, d]} of the
    same token rows and returns ``crosscoder_metrics``: FVU, L0 and dead fraction per source.
    """
    if int(getattr(getattr(sae, "cfg", None), "n_sources", 1) or 1) > 1:
        if model is not None:
            raise ConfigError("evaluate() cannot splice a crosscoder into one model; call it without model=.")
        return crosscoder_metrics(sae, source, batch_size=batch_size)
    _check_width(sae, source, hook_name)
    out = dictionary_metrics(sae, source, batch_size=batch_size, max_tokens=max_tokens)
    if not include_density:
        out.pop("density")
    if model is not None:
        if tokens is None:
            tokens = getattr(source, "tokens", None)
            if callable(tokens):
                tokens = tokens()
        if tokens is None:
            raise ConfigError(
                "evaluate() with a model needs tokens= ([n_seq, n_ctx] token ids) to splice into the model."
            )
        out.update(splice_metrics(sae, model, tokens, hook_name, out_hook_name, splice_batch_size, skip_bos))
    return out


def _check_width(sae: torch.nn.Module, source: Any, hook_name: str | None) -> None:
    """Activations of the wrong width (another hookpoint) get one sentence, not a shape error."""
    x = source[0] if isinstance(source, tuple) else source
    width = x.shape[-1] if isinstance(x, torch.Tensor) else getattr(source, "d_in", None)
    d_in = getattr(getattr(sae, "cfg", None), "d_in", None)
    if width is not None and d_in is not None and int(width) != int(d_in):
        trained = getattr(sae.cfg, "hook_name", "") or "unknown"
        at = f" at {hook_name!r}" if hook_name else ""
        raise ConfigError(
            f"the activations{at} have width {width} but the dictionary expects d_in={d_in}; "
            f"evaluate it at the hookpoint it was trained on ({trained})."
        )
