"""Splice a dictionary's reconstruction into a model's forward pass: CE loss recovered, KL, Δ loss.

For an autoencoder on hookpoint h the activation at h is replaced by ŷ = sae(x). For a transcoder
(MLP input hook → MLP output hook) the MLP's output is replaced by the transcoder's output computed
from the MLP's input in the same pass. Two ablation baselines are reported, because the score
depends on the choice (docs/metrics.md):

* zero ablation: the activation (or the MLP output) is replaced by zeros (SAELens' convention);
* mean ablation: it is replaced by its mean over the evaluated tokens.

``ce_loss_recovered = (L_ablated - L_spliced) / (L_ablated - L_clean)``: 1 is a perfect
reconstruction, 0 is no better than the ablation. KL is KL(p_clean ‖ p_spliced) per token, in nats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from saekit.config import DictionaryConfig
from saekit.errors import ConfigError, DataError
from saekit.hooknames import guess_out_hook
from saekit.models.handle import ModelHandle


def split_hooks(
    sae: torch.nn.Module | DictionaryConfig, hook_name: str | None = None, out_hook_name: str | None = None
) -> tuple[str, str | None]:
    """(input hook, output hook or None) of a dictionary or its config; output hook only for transcoders.

    A transcoder's output hook is, in order: ``out_hook_name``, the ``IN->OUT`` form of
    ``hook_name``, the config's ``hook_name_out`` (when the input hook is the config's own), and
    only then a guess from the input hook (MLP input -> MLP output of the same block).
    """
    cfg = sae if isinstance(sae, DictionaryConfig) else getattr(sae, "cfg", None)
    own_in = getattr(cfg, "hook_name", "") or ""
    hook_name = hook_name or own_in
    if "->" in hook_name:  # "in_hook->out_hook" names both ends of a transcoder
        hook_name, out_hook_name = (s.strip() for s in hook_name.split("->", 1))
    if not hook_name:
        raise ConfigError("hook_name is empty; pass hook_name= (the hookpoint the dictionary was trained on).")
    if not getattr(cfg, "transcoder", False):
        return hook_name, None
    if not out_hook_name and hook_name == own_in:
        out_hook_name = getattr(cfg, "hook_name_out", "") or None
    out_hook_name = out_hook_name or guess_out_hook(hook_name)
    if not out_hook_name:
        raise ConfigError(f"the transcoder's output hook is unknown for input hook {hook_name!r}; pass out_hook_name=.")
    return hook_name, out_hook_name


def run_logits(
    model: Any,
    tokens: torch.Tensor,
    hooks: dict[str, Callable[[torch.Tensor], torch.Tensor | None]] | None = None,
) -> torch.Tensor:
    """Logits [B, T, V] of a forward pass where each hook may read (return None) or replace its activation.

    Hooks run in forward order, so a hook on an earlier point can store what a later one reads.
    """
    return ModelHandle.wrap(model).run_with_hooks(tokens, hooks)


def _token_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def _kl(clean_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    lp = F.log_softmax(clean_logits[:, :-1].float(), dim=-1)
    lq = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return (lp.exp() * (lp - lq)).sum(-1)


@torch.no_grad()
def mean_activation(
    model: Any, tokens: torch.Tensor, hook_name: str, batch_size: int = 16, skip_bos: bool = True
) -> torch.Tensor:
    """Mean activation at ``hook_name`` over all evaluated positions (position 0 left out if skip_bos)."""
    total, count = None, 0
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start : start + batch_size]
        seen: dict[str, torch.Tensor] = {}
        run_logits(model, batch, {hook_name: lambda a, seen=seen: seen.__setitem__("a", a.detach())})
        act = seen["a"][:, 1:] if skip_bos else seen["a"]
        s = act.double().sum((0, 1))
        total = s if total is None else total + s
        count += act.shape[0] * act.shape[1]
    return (total / count).float()


def _apply_sae(sae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    p = next(sae.parameters())
    flat = x.reshape(-1, x.shape[-1]).to(device=p.device, dtype=p.dtype)
    return sae(flat).to(dtype=x.dtype, device=x.device)


@torch.no_grad()
def splice_metrics(
    sae: torch.nn.Module,
    model: Any,
    tokens: torch.Tensor,
    hook_name: str | None = None,
    out_hook_name: str | None = None,
    batch_size: int = 16,
    skip_bos: bool = True,
) -> dict[str, Any]:
    """CE loss recovered (zero and mean ablation), KL and Δ loss of ``sae`` spliced into ``model``.

    tokens: LongTensor [n_seq, n_ctx]. skip_bos: leave position 0 (the BOS token, an outlier most
    dictionaries are not trained on) untouched in every run, the ablations included, and out of the
    ablation mean. (``saekit cache --keep-bos`` is the other side of the same choice: a cache drops
    BOS rows unless told to keep them.)
    """
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise DataError(f"tokens must be a [n_seq, n_ctx ≥ 2] tensor, got shape {tuple(tokens.shape)}.")
    in_hook, out_hook = split_hooks(sae, hook_name, out_hook_name)
    target_hook = out_hook or in_hook
    p = next(ModelHandle.wrap(model).model.parameters())
    tokens = tokens.to(p.device)
    mean = mean_activation(model, tokens, target_hook, batch_size, skip_bos).to(p.device)

    def keep_first(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        if skip_bos:
            new = new.clone()
            new[:, 0] = old[:, 0]
        return new

    sums = {k: 0.0 for k in ("clean", "spliced", "zero", "mean", "kl_spliced", "kl_zero", "kl_mean")}
    n = 0
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start : start + batch_size]
        clean = run_logits(model, batch)
        if out_hook is None:
            spliced_hooks = {in_hook: lambda a: keep_first(_apply_sae(sae, a).reshape(a.shape), a)}
        else:
            store: dict[str, torch.Tensor] = {}

            def read_in(a: torch.Tensor, store=store) -> None:
                store["x"] = a

            def write_out(a: torch.Tensor, store=store) -> torch.Tensor:
                return keep_first(_apply_sae(sae, store["x"]).reshape(a.shape), a)

            spliced_hooks = {in_hook: read_in, out_hook: write_out}
        spliced = run_logits(model, batch, spliced_hooks)
        zero = run_logits(model, batch, {target_hook: lambda a: keep_first(torch.zeros_like(a), a)})
        meaned = run_logits(model, batch, {target_hook: lambda a: keep_first(mean.to(a.dtype).expand_as(a), a)})
        for key, logits in (("clean", clean), ("spliced", spliced), ("zero", zero), ("mean", meaned)):
            sums[key] += float(_token_losses(logits, batch).double().sum())
        for key, logits in (("kl_spliced", spliced), ("kl_zero", zero), ("kl_mean", meaned)):
            sums[key] += float(_kl(clean, logits).double().sum())
        n += batch.shape[0] * (batch.shape[1] - 1)
    avg = {k: v / n for k, v in sums.items()}

    def recovered(ablated: float) -> float:
        denom = ablated - avg["clean"]
        return (ablated - avg["spliced"]) / denom if denom != 0 else float("nan")

    return {
        "splice_hook": target_hook,
        "mlp_replacement": out_hook is not None,
        "clean_loss": avg["clean"],
        "spliced_loss": avg["spliced"],
        "zero_ablation_loss": avg["zero"],
        "mean_ablation_loss": avg["mean"],
        "delta_loss": avg["spliced"] - avg["clean"],
        "ce_loss_recovered": recovered(avg["zero"]),
        "ce_loss_recovered_mean_ablation": recovered(avg["mean"]),
        "kl_div": avg["kl_spliced"],
        "kl_div_zero_ablation": avg["kl_zero"],
        "kl_div_mean_ablation": avg["kl_mean"],
        "splice_tokens": n,
    }
