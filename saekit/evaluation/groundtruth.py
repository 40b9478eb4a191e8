"""Synthetic worlds with hierarchy and correlation, and how well a dictionary recovers them.

``hierarchical_data`` (in the spirit of SAELens's SynthSAEBench): x = Σ_i c_i f_i over known unit
feature directions f_i, where

* firing probabilities are Zipfian (p_i ∝ 1/rank^``zipf_exponent``, scaled to ``mean_active``
  independent features per token);
* firing is correlated through a low-rank Gaussian copula: g = L u + ε with L [n, ``corr_rank``],
  feature i on when Φ(g_i / sd_i) < p_i, so each marginal stays p_i while features sharing
  factors co-fire (``corr_strength`` sets the share of variance in the factors);
* ``n_parents`` parents each own ``children_per_parent`` children that fire *only when their
  parent does*: given the parent, one child (``exclusive_children``) or each child independently
  fires with probability ``p_child``. This is the structure behind feature absorption: a sparse
  dictionary saves L0 by folding the parent's direction into each child's latent and letting the
  parent latent fall silent whenever a child fires.

``groundtruth_scores(sae, world)`` compares the dictionary's codes with the true codes: MCC
(mean Pearson correlation over a one-to-one Hungarian matching of true features to latents),
per-feature precision / recall / F1 of the matched latent's firing, uniqueness (distinct
features among the live latents' best matches, over the live latents: 1 when no two latents
track one feature) and two absorption scores: ``absorption`` (firing: the parent latent falls
silent when a child fires; ``absorption_scores``) and ``absorption_decoder`` (geometry: the
child latents' decoder rows lean toward their parent's direction; ``decoder_absorption``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm

from saekit.errors import ConfigError
from saekit.evaluation.matching import _unit_rows, decoder_of


@dataclass
class SyntheticWorld:
    """A generated data set with its ground truth."""

    x: torch.Tensor  # [n_samples, d] activations
    codes: torch.Tensor  # [n_samples, n_features] true coefficients (0 when off)
    features: torch.Tensor  # [n_features, d] unit rows
    parent: torch.Tensor  # [n_features] index of the parent feature, -1 for features without one

    @property
    def true_l0(self) -> float:
        return float((self.codes != 0).sum(-1).float().mean())

    def children(self, p: int) -> list[int]:
        return (self.parent == p).nonzero().flatten().tolist()

    @property
    def parents(self) -> list[int]:
        return sorted(set(self.parent[self.parent >= 0].tolist()))


def _directions(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """n unit directions in d dims: orthonormal when n ≤ d (no superposition noise), else random."""
    a = torch.randn(max(n, d), d, generator=gen)
    if n <= d:
        q, _ = torch.linalg.qr(a[:d].T)
        return q.T[:n].contiguous()
    return a[:n] / a[:n].norm(dim=-1, keepdim=True)


def _copula_fire(n_samples: int, p: torch.Tensor, rank: int, strength: float, gen: torch.Generator) -> torch.Tensor:
    """[n_samples, n] bool with marginals ``p`` and correlations from a rank-``rank`` factor model."""
    n = p.numel()
    if rank > 0 and strength > 0:
        load = torch.randn(n, rank, generator=gen) * (strength / rank) ** 0.5
        g = torch.randn(n_samples, rank, generator=gen) @ load.T
        g = g + torch.randn(n_samples, n, generator=gen) * (1 - strength) ** 0.5
        sd = (load.pow(2).sum(-1) + (1 - strength)).sqrt()
        g = g / sd
    else:
        g = torch.randn(n_samples, n, generator=gen)
    cut = torch.as_tensor(norm.ppf(p.clamp(1e-9, 1 - 1e-9).double().numpy()), dtype=torch.float32)
    return g < cut


def hierarchical_data(
    n_samples: int,
    d: int,
    n_features: int,
    n_parents: int = 8,
    children_per_parent: int = 4,
    mean_active: float = 3.0,
    zipf_exponent: float = 0.5,
    p_child: float = 0.8,
    exclusive_children: bool = True,
    corr_rank: int = 4,
    corr_strength: float = 0.3,
    magnitude: tuple[float, float] = (0.5, 1.5),
    seed: int = 0,
) -> SyntheticWorld:
    """Generate a world (see the module docstring); every draw comes from ``seed``."""
    n_tree = n_parents * (children_per_parent + 1)
    if n_tree > n_features:
        raise ConfigError(
            f"n_parents × (children_per_parent + 1) = {n_tree} exceeds n_features = {n_features}; "
            "lower one or raise n_features."
        )
    if not 0 < p_child <= 1:
        raise ConfigError(f"p_child must be in (0, 1], got {p_child}.")
    gen = torch.Generator().manual_seed(seed)
    feats = _directions(n_features, d, gen)
    parent = torch.full((n_features,), -1, dtype=torch.long)
    kids = torch.arange(n_parents, n_tree).view(n_parents, children_per_parent)
    for p in range(n_parents):
        parent[kids[p]] = p
    roots = (parent < 0).nonzero().flatten()  # parents and free features fire on their own
    rank = torch.arange(1, roots.numel() + 1, dtype=torch.float32)
    prob = 1.0 / rank**zipf_exponent
    prob = (prob / prob.sum() * mean_active).clamp(max=0.9)
    on = torch.zeros(n_samples, n_features, dtype=torch.bool)
    on[:, roots] = _copula_fire(n_samples, prob, corr_rank, corr_strength, gen)
    for p in range(n_parents):
        ch = kids[p]
        if exclusive_children:
            pick = torch.randint(0, children_per_parent, (n_samples,), generator=gen)
            fire = torch.rand(n_samples, generator=gen) < p_child
            child_on = torch.nn.functional.one_hot(pick, children_per_parent).bool() & fire[:, None]
        else:
            child_on = torch.rand(n_samples, children_per_parent, generator=gen) < p_child
        on[:, ch] = child_on & on[:, p : p + 1]
    lo, hi = magnitude
    codes = on * (lo + (hi - lo) * torch.rand(n_samples, n_features, generator=gen))
    return SyntheticWorld(codes @ feats, codes, feats, parent)


@torch.no_grad()
def _codes_of(sae, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    return torch.cat([sae.encode(x[i : i + batch]).detach().float().cpu() for i in range(0, x.shape[0], batch)])


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every column of ``a`` with every column of ``b`` (0 for constants)."""
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    na, nb = a.norm(dim=0), b.norm(dim=0)
    c = (a.T @ b) / (na[:, None] * nb[None, :]).clamp_min(1e-12)
    c[na == 0] = 0
    c[:, nb == 0] = 0
    return c


def absorption_scores(z: torch.Tensor, world: SyntheticWorld, latent_of: np.ndarray) -> list[float]:
    """Per parent: how much more often its latent is silent when a child fires than when none does.

    With ℓ the parent's matched latent: P(ℓ off | parent on, a child on) − P(ℓ off | parent on,
    no child on), floored at 0. 0: the parent latent fires whatever the children do; 1: it fires
    only when no child is there (the children's latents absorbed it).
    """
    on = world.codes[: z.shape[0]] != 0  # z holds the codes of the world's first rows
    out = []
    for p in world.parents:
        ch = world.children(p)
        lat_off = z[:, latent_of[p]] == 0
        with_child = on[:, p] & on[:, ch].any(-1)
        alone = on[:, p] & ~on[:, ch].any(-1)
        if int(with_child.sum()) == 0 or latent_of[p] < 0:
            continue
        miss_with = float(lat_off[with_child].float().mean())
        miss_alone = float(lat_off[alone].float().mean()) if int(alone.sum()) else 0.0
        out.append(max(0.0, miss_with - miss_alone))
    return out


def decoder_absorption(cos: np.ndarray, world: SyntheticWorld, latent_of: np.ndarray) -> float:
    """Mean over (parent, child) of the parent direction's share in the child latent's decoder row.

    ``cos`` [n_latents, n_features]: decoder rows against the true directions. An absorbing child
    latent reconstructs parent + child, so its row leans toward the parent (cos ≈ 0.7 for equal
    magnitudes); a clean one is orthogonal to it (the world's directions are orthonormal when
    n_features ≤ d). Negative cosines count as 0.
    """
    vals = [
        max(0.0, float(cos[latent_of[c], p]))
        for p in world.parents
        for c in world.children(p)
        if latent_of[c] >= 0
    ]
    return float(np.mean(vals)) if vals else 0.0


def groundtruth_scores(sae, world: SyntheticWorld, n_eval: int | None = 20_000) -> dict:
    """MCC, per-feature precision / recall / F1, uniqueness and absorption of ``sae`` on ``world``."""
    n = world.x.shape[0] if n_eval is None else min(n_eval, world.x.shape[0])
    z = _codes_of(sae, world.x[:n])
    truth = world.codes[:n]
    corr = _corr(truth, z).numpy()
    rows, cols = linear_sum_assignment(np.nan_to_num(corr), maximize=True)
    latent_of = np.full(truth.shape[1], -1)
    latent_of[rows] = cols
    t_on, z_on = truth != 0, z != 0
    tp = (t_on[:, rows] & z_on[:, cols]).sum(0).double()
    precision = (tp / z_on[:, cols].sum(0).clamp_min(1)).numpy()
    recall = (tp / t_on[:, rows].sum(0).clamp_min(1)).numpy()
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    alive = z_on.any(0).numpy()
    cos = (_unit_rows(decoder_of(sae)) @ _unit_rows(world.features).T).numpy()  # [n_latents, n_features]
    best_feature = cos[alive].argmax(1)
    absorption = absorption_scores(z, world, latent_of)
    return {
        "mcc": float(corr[rows, cols].mean()),
        "f1": float(f1.mean()),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1_per_feature": f1.tolist(),
        "precision_per_feature": precision.tolist(),
        "recall_per_feature": recall.tolist(),
        "uniqueness": float(len(set(best_feature.tolist())) / max(1, int(alive.sum()))),
        "absorption": float(np.mean(absorption)) if absorption else 0.0,
        "absorption_per_parent": absorption,
        "absorption_decoder": decoder_absorption(cos, world, latent_of),
        "l0": float(z_on.sum(-1).float().mean()),
        "true_l0": world.true_l0,
    }
