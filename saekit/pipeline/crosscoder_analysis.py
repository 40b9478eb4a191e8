"""What a trained crosscoder says, on held-out rows, and how much of it survives a change of seed.

``analyse_held_out(cc, held)``: sharing (decoder-norm share, classes), latent scaling, per-source
metrics (FVU, L0, dead fraction) and the top contexts of a few exclusive latents per source, with
how strongly each context's activation writes into every model (activation × ‖d^m‖).

``over_seeds(per_seed)``: the counts per class and the per-source metrics of several crosscoders
(one per seed) as a mean with a 95 % t interval over seeds (``saekit.pipeline.stats.mean_t_interval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

N_EXAMPLES = 3  # exclusive latents shown per source
N_CONTEXTS = 5  # top contexts per latent
CONTEXT_WINDOW = 8  # tokens before the active token
LEVEL = 0.95


@dataclass
class HeldOut:
    """Held-out rows every analysed crosscoder reads: activations and where each row's token sits."""

    acts: torch.Tensor  # [N, M, d]
    tokens: torch.Tensor  # [n_seq, n_ctx] token ids
    where: torch.Tensor  # [N, 2] (sequence, position) of each row
    tokenizer: Any = None


def held_out_from_grids(grids: list[torch.Tensor], tokens: torch.Tensor, tokenizer: Any = None) -> HeldOut:
    """HeldOut from one activation grid [n_seq, n_ctx, d] per model over ``tokens`` (BOS dropped)."""
    acts = torch.stack([g[:, 1:].float() for g in grids], dim=2)  # [rows, pos, M, d]
    rows, pos = acts.shape[:2]
    where = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(1, pos + 1), indexing="ij"), -1)
    return HeldOut(acts.reshape(rows * pos, *acts.shape[2:]), tokens, where.reshape(-1, 2), tokenizer)


@torch.no_grad()
def analyse_held_out(cc: Any, held: HeldOut) -> dict[str, Any]:
    """Sharing, latent scaling, per-source metrics and example contexts of ``cc`` on ``held``."""
    from saekit.evaluation.crosscoder import crosscoder_sharing, firing_density, latent_scaling
    from saekit.evaluation.crosscoder_metrics import crosscoder_metrics

    data = held.acts.to(cc.W_enc.device)
    sharing = crosscoder_sharing(cc, density=firing_density(cc, data))
    scaling = latent_scaling(cc, data, sharing=sharing)
    return {
        "dictionary": cc.cfg.to_dict(),
        "n_eval_tokens": int(data.shape[0]),
        "sharing": sharing.to_dict(),
        "latent_scaling": scaling.to_dict(),
        "metrics": crosscoder_metrics(cc, data),
        "examples": _examples(cc, data, sharing, scaling, held),
    }


def _examples(cc, data, sharing, scaling, held: HeldOut) -> list[dict[str, Any]]:
    """Top contexts of a few exclusive latents per source (flagged ones marked)."""
    flagged = dict(zip(scaling.latents, scaling.flagged.tolist()))
    worst = {}
    for li, j in enumerate(scaling.latents):
        row = torch.nan_to_num(torch.maximum(scaling.nu_error[li], scaling.nu_recon[li]), nan=0.0)
        worst[j] = float(row.max())
    z = torch.cat([cc.encode(data[i : i + 4096]).cpu() for i in range(0, data.shape[0], 4096)])
    norms = cc.W_dec.detach().float().norm(dim=-1).cpu()  # [n, M]: a context writes act × ‖d^m‖ into model m
    out = []
    for name in sharing.names:
        latents = sorted(sharing.latents(name), key=lambda j: -float(z[:, j].max()))[:N_EXAMPLES]
        for j in latents:
            top = z[:, j].topk(min(N_CONTEXTS, z.shape[0]))
            contexts = [
                {
                    "act": float(a),
                    "writes": {n: float(a * norms[j, m]) for m, n in enumerate(sharing.names)},
                    "text": _context(held.tokens, held.where[int(r)], held.tokenizer),
                }
                for a, r in zip(top.values, top.indices)
                if a > 0
            ]
            out.append({"latent": j, "owner": name, "flagged": bool(flagged.get(j)), "nu": worst.get(j, 0.0), "contexts": contexts})
    return out


def _context(tokens: torch.Tensor, at: torch.Tensor, tokenizer: Any) -> str:
    row, pos = int(at[0]), int(at[1])
    before = tokens[row, max(0, pos - CONTEXT_WINDOW) : pos].tolist()
    return f"{_decode(tokenizer, before)}⟦{_decode(tokenizer, [int(tokens[row, pos])])}⟧"


def _decode(tokenizer: Any, ids: list[int]) -> str:
    if tokenizer is None:
        return " ".join(map(str, ids))
    return tokenizer.decode(ids)


def seed_record(analysis: dict[str, Any]) -> dict[str, Any]:
    """The per-seed figures results.json keeps for every seed (per-latent arrays only for the first)."""
    return {
        "counts": analysis["sharing"]["counts"],
        "n_flagged": int(sum(analysis["latent_scaling"]["flagged"])),
        "n_scaled": len(analysis["latent_scaling"]["latents"]),
        "metrics": analysis["metrics"],
        "relative_norm": [row[-1] for row, c in zip(analysis["sharing"]["share"], analysis["sharing"]["classes"]) if c != "dead"],
    }


def over_seeds(per_seed: dict[Any, dict[str, Any]], level: float = LEVEL) -> dict[str, Any]:
    """Counts per class, flagged latents and per-source metrics as mean with a t interval over seeds."""
    from saekit.pipeline.stats import mean_t_interval

    recs = list(per_seed.values())
    classes = list(recs[0]["counts"])
    n = sum(recs[0]["counts"].values())
    counts = {c: mean_t_interval([r["counts"][c] for r in recs], level, (0, n)) for c in classes}
    flagged = mean_t_interval([r["n_flagged"] for r in recs], level, (0, n))
    # intervals clipped to what each quantity can take: FVU ≥ 0, L0 in [0, n], a fraction in [0, 1]
    bounds = {"fvu": (0.0, float("inf")), "l0": (0.0, n), "dead_fraction": (0.0, 1.0)}
    metrics: dict[str, Any] = {k: mean_t_interval([r["metrics"][k] for r in recs], level, b) for k, b in bounds.items()}
    metrics["per_source"] = {
        name: {k: mean_t_interval([r["metrics"]["per_source"][name][k] for r in recs], level, b) for k, b in bounds.items()}
        for name in recs[0]["metrics"]["per_source"]
    }
    return {"seeds": list(per_seed), "level": level, "counts": counts, "n_flagged": flagged, "metrics": metrics}
