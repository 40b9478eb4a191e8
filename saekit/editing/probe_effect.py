"""The concept effect read by a probe: how well a linear probe, fitted on the clean model, still tells
concept positions from control positions after the top-n units are ablated.

A logistic-regression probe is fitted on the activation at ``probe_hook`` (default: the units'
hookpoint, read after the edit) on half of a balanced sample of concept and control positions; for
each n its accuracy on the other half is measured with the top-n units ablated. probe_drop(n) =
accuracy(0) - accuracy(n); chance is 0.5 (balanced classes). This is the issue's alternative to the
drop in log-probability: it measures whether the concept is still *represented*, not only whether
the model still *says* it.
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.editing.ablate import ablation_hook, control_means
from saekit.editing.concepts import ConceptSet
from saekit.editing.units import Units
from saekit.errors import DataError
from saekit.evaluation.splice import run_logits
from saekit.models.handle import ModelHandle


@torch.no_grad()
def _features(units: Units, tokens: torch.Tensor, mask: torch.Tensor, probe_hook: str, edit: Any, bs: int = 16):
    """Activations [n_masked, d] at probe_hook (after ``edit`` at the units' hook, when given)."""
    device = ModelHandle.wrap(units.model).device
    seen: dict[str, torch.Tensor] = {}

    def read(a: torch.Tensor) -> None:
        seen["a"] = a.detach()

    def edit_then_read(a: torch.Tensor) -> torch.Tensor:
        new = edit(a)
        read(new)
        return new

    if probe_hook == units.hook:
        hooks = {units.hook: edit_then_read if edit else read}
    else:
        hooks = {**({units.hook: edit} if edit else {}), probe_hook: read}
    out = []
    for s in range(0, tokens.shape[0], bs):
        batch, m = tokens[s : s + bs].to(device), mask[s : s + bs].to(device)
        run_logits(units.model, batch, hooks)
        out.append(seen["a"][m].float().cpu())
    return torch.cat(out)


def _fit(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression on standardised x (weights, bias, and the standardisation folded in)."""
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = (w / sd).detach()
    return w_raw, (b - (mu * w_raw).sum()).detach()


def probe_ablation_curve(
    units: Units, concept: ConceptSet, ranking: list[int], ns: list[int], mode: str = "zero",
    probe_hook: str | None = None, max_positions: int = 2000, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Held-out accuracy of a concept probe (fitted on the clean model) with the top-n units ablated."""
    probe_hook = probe_hook or units.hook
    g = torch.Generator().manual_seed(seed)
    n_c, n_k = int(concept.concept_mask.sum()), int(concept.control_mask.sum())
    n = min(n_c, n_k, max_positions // 2)
    if n < 4:
        raise DataError(f"a concept probe needs at least 4 concept and 4 control positions, got {n_c} and {n_k}.")
    pick_c, pick_k = torch.randperm(n_c, generator=g)[:n], torch.randperm(n_k, generator=g)[:n]
    half = torch.zeros(n, dtype=torch.bool)
    half[torch.randperm(n, generator=g)[: n // 2]] = True  # True: fitting half
    means = control_means(units, concept) if mode == "mean" else None

    def sample(edit: Any) -> tuple[torch.Tensor, torch.Tensor]:
        xc = _features(units, concept.concept_tokens, concept.concept_mask, probe_hook, edit)[pick_c]
        xk = _features(units, concept.control_tokens, concept.control_mask, probe_hook, edit)[pick_k]
        return xc, xk

    xc, xk = sample(None)
    w, b = _fit(torch.cat([xc[half], xk[half]]), torch.cat([torch.ones(int(half.sum())), torch.zeros(int(half.sum()))]))

    def accuracy(xc: torch.Tensor, xk: torch.Tensor) -> float:
        right = torch.cat([(xc[~half] @ w + b) > 0, (xk[~half] @ w + b) <= 0])
        return float(right.float().mean())

    acc = [accuracy(xc, xk) if k == 0 else accuracy(*sample(ablation_hook(units, ranking[:k], mode, means))) for k in ns]
    return {
        "kind": units.kind, "hook": units.hook, "probe_hook": probe_hook, "concept": concept.name, "mode": mode,
        "n": list(ns), "probe_accuracy": acc, "probe_drop": [acc[0] - a for a in acc] if ns and ns[0] == 0 else None,
        "chance": 0.5, "n_positions": 2 * n,
    }  # fmt: skip
