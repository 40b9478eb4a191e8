"""What an edit does to the model: concept log-probability, control loss, target probability.

With log p(x_{t+1} | x_{≤t}) the model's next-token log-probability:

* concept_logprob = mean over concept positions of log p(next token) (the concept's continuations);
* concept_prob = mean over concept positions of p(next token);
* control_loss = mean over control positions of -log p(next token) (LM loss on control text);
* target_logprob = log of the mean over control positions of Σ_{v ∈ targets} p(v): how readily the
  model says one of the concept's continuation tokens in text that is not about the concept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from saekit.editing.concepts import ConceptSet
from saekit.evaluation.splice import run_logits
from saekit.models.handle import ModelHandle

Hook = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def _sums(model: Any, tokens: torch.Tensor, mask: torch.Tensor, hooks: dict[str, Hook], targets: list[int], bs: int):
    device = ModelHandle.wrap(model).device
    s = {"logp": 0.0, "p": 0.0, "target_p": 0.0, "n": 0}
    for start in range(0, tokens.shape[0], bs):
        batch, m = tokens[start : start + bs].to(device), mask[start : start + bs, :-1].to(device)
        logp = F.log_softmax(run_logits(model, batch, hooks)[:, :-1].double(), dim=-1)
        lp = logp.gather(-1, batch[:, 1:, None]).squeeze(-1)[m]
        s["logp"] += float(lp.sum())
        s["p"] += float(lp.exp().sum())
        s["target_p"] += float(logp[..., targets].exp().sum(-1)[m].sum()) if targets else 0.0
        s["n"] += int(m.sum())
    return s


def measure(
    model: Any, concept: ConceptSet, hooks: dict[str, Hook] | None = None, batch_size: int = 16
) -> dict[str, float]:
    """concept_logprob, concept_prob, control_loss and target_logprob of the model with ``hooks`` applied."""
    hooks = hooks or {}
    c = _sums(model, concept.concept_tokens, concept.concept_mask, hooks, [], batch_size)
    k = _sums(model, concept.control_tokens, concept.control_mask, hooks, concept.targets, batch_size)
    return {
        "concept_logprob": c["logp"] / c["n"],
        "concept_prob": c["p"] / c["n"],
        "control_loss": -k["logp"] / k["n"],
        "target_logprob": float(torch.tensor(max(k["target_p"] / k["n"], 1e-300)).log()),
    }
