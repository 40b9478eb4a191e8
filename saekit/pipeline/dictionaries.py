"""Step 3: per variant × dictionary × seed: train, evaluate, auto-interpret, pick example latents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.evaluation.autointerp import SparseActs, autointerp, collect_acts, top_contexts
from saekit.evaluation.metrics import dictionary_metrics
from saekit.evaluation.probes import opposing_pairs
from saekit.evaluation.splice import splice_metrics, split_hooks
from saekit.pipeline.activations import VariantActivations
from saekit.pipeline.seeds import derive_seed
from saekit.pipeline.variants import SharedTokens

# per-latent arrays that stay out of results.json (the report needs only their summaries)
_DROP = ("density", "matched_cos", "perm_a", "perm_b", "act_corr")


def drop_arrays(d: dict) -> dict:
    return {k: (drop_arrays(v) if isinstance(v, dict) else v) for k, v in d.items() if k not in _DROP}


@dataclass
class EvalSettings:
    """How much of the held-out text each evaluation uses."""

    n_splice_seqs: int = 32
    autointerp_latents: int = 256
    n_examples: int = 4
    prior_latents: int = 64  # latents fitted by the sparsity-prior diagnostic (0 = off)


def train_dictionary(
    cfg: DictionaryConfig, acts: VariantActivations, tcfg: TrainConfig, seed: int, progress: bool
) -> torch.nn.Module:
    """One dictionary trained with ``seed`` on the variant's training activations, in eval mode."""
    from saekit.training import train

    source = acts.training_source(cfg, seed)
    try:
        sae = train(cfg, source, tcfg.replace(seed=seed), progress=progress)
    finally:
        if acts.cache is not None:
            source.close()
    return sae.eval()


def sparse_no_bos(sae: torch.nn.Module, x: torch.Tensor) -> SparseActs:
    """Codes on the whole token grid, with position 0 (BOS) cleared so it never counts as firing."""
    acts = collect_acts(sae, x.reshape(-1, x.shape[-1]))
    return acts.restrict(np.arange(acts.n_tokens) % x.shape[1] != 0)


def evaluate_dictionary(
    sae: torch.nn.Module,
    handle: Any,
    acts: VariantActivations,
    tokens: SharedTokens,
    settings: EvalSettings,
    seed: int,
    label: tuple[str, str],
) -> tuple[dict[str, Any], dict[str, Any], SparseActs]:
    """(metrics, auto-interp, held-out codes) of one dictionary on held-out tokens.

    Metrics: core reconstruction and sparsity, splicing into the model, opposing decoder pairs.
    Auto-interp: n-gram explanations learned on training tokens, scored on held-out tokens, for up to
    ``autointerp_latents`` alive latents sampled with ``derive_seed(seed, "autointerp", *label)``.
    """
    metrics = dictionary_metrics(sae, acts.held_out_source(sae.cfg))
    metrics.update(splice_metrics(sae, handle, tokens.eval[: settings.n_splice_seqs]))
    metrics.update(opposing_pairs(sae))
    in_hook, _ = split_hooks(sae.cfg)
    acts_tr = sparse_no_bos(sae, acts.explain_grid(in_hook))
    acts_ev = sparse_no_bos(sae, acts.held_out[in_hook])
    alive = np.flatnonzero(np.diff(acts_tr.indptr) > 0)
    rng = np.random.default_rng(derive_seed(seed, "autointerp", *label))
    chosen = sorted(rng.choice(alive, size=min(settings.autointerp_latents, len(alive)), replace=False).tolist())
    W_U = getattr(handle.model, "W_U", None)
    ai = autointerp(
        acts_tr, tokens.train[: acts.n_explain_seqs], acts_ev, tokens.eval,
        latents=chosen, tokenizer=handle.tokenizer, W_dec=sae.W_dec, W_U=W_U,
    )  # fmt: skip
    return drop_arrays(metrics), ai, acts_ev


def pick_examples(
    label: tuple[str, str], ai: dict[str, Any], acts_ev: SparseActs, tokens: SharedTokens, tokenizer: Any,
    n: int, seed: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """A few latents to show: the best-explained ones and some chosen at random, with top contexts."""
    scored = [r for r in ai["latents"] if r["n_fired"] >= 3]
    if not scored:
        return []
    best = sorted(scored, key=lambda r: -r["f1"])[: max(1, n // 2)]
    rest = [r for r in scored if r not in best]
    rng = np.random.default_rng(derive_seed(seed, "examples", *label))
    picked = rng.choice(len(rest), size=min(n - len(best), len(rest)), replace=False) if rest else []
    out = []
    for r in best + [rest[i] for i in picked]:
        ctx = top_contexts(acts_ev, tokens.eval, r["latent"], n=4)
        for c in ctx:
            ids = c.pop("tokens")
            c["text"] = [tokenizer.decode([i]) for i in ids] if tokenizer is not None else [str(i) for i in ids]
        keys = ("latent", "explanation", "f1", "precision", "recall", "token_entropy")
        out.append(
            {"variant": label[0], "dict": label[1], **{k: r[k] for k in keys},
             "logit_lens": r.get("logit_lens_text", []), "contexts": ctx}
        )  # fmt: skip
    return out
