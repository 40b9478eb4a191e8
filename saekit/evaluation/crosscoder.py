"""What a crosscoder says about its models: which latents are shared, which one model has alone.

``crosscoder_sharing(cc)``: per latent the share of the decoder norm in each source
(‖d^m‖ / Σ_m' ‖d^m'‖; for two sources the relative norm ‖d_b‖ / (‖d_a‖ + ‖d_b‖) is share[:, 1]),
a class ("shared", the name of the one source holding at least ``exclusive`` of the norm, or
"dead"), the cosine between a latent's decoder vectors, and the thresholds used.

``latent_scaling(cc, data)`` (after Minder et al. 2025, "Overcoming sparsity artifacts in
crosscoders"): an exclusive-looking latent j of source s may be an artefact of the sparsity
penalty, its feature still present in the other models but explained by their error or by other
latents. For every other source o it fits how much o's reconstruction error (with j's own
contribution put back) and o's reconstruction (without j) move with j's activation f_j, relative
to how much source s's activations do:

    ν_ε(o) = ‖v(f_j, x_o - x̂_o + f_j d_j^o)‖ / ‖v(f_j, x_s)‖,
    ν_r(o) = ‖v(f_j, x̂_o - f_j d_j^o)‖ / ‖v(f_j, x_s)‖,

with v(f, t) the least-squares slope vector of t on f (with an intercept). This generalises
Minder et al.'s scalar fit along d_j^s to models whose activation spaces are not aligned (here
variants are trained independently); ``aligned=True`` uses their scalar fit along d_j^s instead,
for models that share a basis (a base model and its fine-tune, or a model and itself). A truly
exclusive latent has ν ≈ 0 in every other source; ν above ``nu_threshold`` flags the artefact.
All fits run in the crosscoder's scaled units (``act_scale``), like the decoder norms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

DEFAULT_THRESHOLDS = {"exclusive": 0.9, "dead_norm": 0.01}
DEFAULT_NU_THRESHOLD = 0.2


@dataclass
class Sharing:
    """The sharing analysis of one crosscoder (tensors on the CPU)."""

    names: tuple[str, ...]
    norms: torch.Tensor  # [n_latents, M] decoder norm per source
    share: torch.Tensor  # [n_latents, M] norm share per source (rows sum to 1; 0 for dead latents)
    classes: list[str]  # per latent: "shared", a source name, or "dead"
    cosine: torch.Tensor  # [n_latents, M, M] cosine between a latent's decoder vectors
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def relative_norm(self) -> torch.Tensor:
        """For two sources: ‖d_b‖ / (‖d_a‖ + ‖d_b‖) per latent (0 = only a, 1 = only b)."""
        return self.share[:, -1]

    @property
    def pair_cosine(self) -> torch.Tensor:
        """For two sources: cos(d_a, d_b) per latent."""
        return self.cosine[:, 0, -1]

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in ("shared", *self.names, "dead")}
        for c in self.classes:
            out[c] += 1
        return out

    def latents(self, cls: str) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c == cls]

    def exclusive(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c in self.names]

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "thresholds": dict(self.thresholds),
            "counts": self.counts(),
            "share": self.share.tolist(),
            "classes": list(self.classes),
        }


def crosscoder_sharing(
    cc: Any, thresholds: dict[str, float] | None = None, density: torch.Tensor | None = None
) -> Sharing:
    """Per latent: decoder-norm share of each source, class and decoder cosines.

    thresholds: ``exclusive`` (a source holding at least this share of a latent's decoder norm
    has it alone; default 0.9, i.e. relative norm ≤ 0.1 or ≥ 0.9 for pairs) and ``dead_norm``
    (a latent whose total decoder norm is below this fraction of the median is dead). With
    ``density`` [n_latents] (firing frequency on data), latents that never fired are dead too.
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    if not 0.5 < th["exclusive"] <= 1:
        from saekit.errors import ConfigError

        raise ConfigError(f"thresholds['exclusive'] must be in (0.5, 1], got {th['exclusive']}.")
    with torch.no_grad():
        w = cc.W_dec.detach().float().cpu()  # [n, M, d]
        norms = w.norm(dim=-1)
        total = norms.sum(-1)
        dead = total < th["dead_norm"] * total.median().clamp_min(1e-12)
        if density is not None:
            dead |= torch.as_tensor(density).cpu().reshape(-1) <= 0
        share = torch.where(dead[:, None], torch.zeros_like(norms), norms / total.clamp_min(1e-12)[:, None])
        unit = w / norms.clamp_min(1e-12)[..., None]
        cosine = unit @ unit.transpose(1, 2)
    names = tuple(cc.source_names)
    top, arg = share.max(-1)
    classes = [
        "dead" if bool(dead[i]) else (names[int(arg[i])] if float(top[i]) >= th["exclusive"] else "shared")
        for i in range(share.shape[0])
    ]
    return Sharing(names, norms, share, classes, cosine, th)


@dataclass
class LatentScaling:
    """ν per examined latent and source (NaN in the latent's own source)."""

    names: tuple[str, ...]
    latents: list[int]
    owner: list[str]  # the source each latent looks exclusive to
    nu_error: torch.Tensor  # [L, M]
    nu_recon: torch.Tensor  # [L, M]
    flagged: torch.Tensor  # [L] bool: ν_ε or ν_r above the threshold in some other source
    nu_threshold: float
    aligned: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "latents": self.latents,
            "owner": self.owner,
            "nu_error": _nan_to_none(self.nu_error.tolist()),
            "nu_recon": _nan_to_none(self.nu_recon.tolist()),
            "flagged": self.flagged.tolist(),
            "nu_threshold": self.nu_threshold,
            "aligned": self.aligned,
        }


def latent_scaling(
    cc: Any,
    data: Any,
    latents: list[int] | None = None,
    *,
    sharing: Sharing | None = None,
    nu_threshold: float = DEFAULT_NU_THRESHOLD,
    aligned: bool = False,
    batch_size: int = 4096,
) -> LatentScaling:
    """ν_ε and ν_r (module docstring) of ``latents`` (default: the exclusive ones) on ``data``.

    data: a Tensor [N, M, d] or a dict {source name: Tensor [N, d]} with the same rows.
    """
    x = _stack(cc, data)
    sharing = sharing or crosscoder_sharing(cc)
    latents = sharing.exclusive() if latents is None else [int(i) for i in latents]
    owners = [int(sharing.share[j].argmax()) for j in latents]
    stats = _moments(cc, x, latents, batch_size)
    m = cc.n_sources
    nu_e = torch.full((len(latents), m), float("nan"))
    nu_r = torch.full((len(latents), m), float("nan"))
    dec = cc.W_dec.detach().float().cpu()[latents]  # [L, M, d]
    for li, s in enumerate(owners):
        d_own = dec[li, s]
        own = _fit(stats, li, "x", s, d_own, aligned)
        for o in range(m):
            if o == s:
                continue
            fe = _fit(stats, li, "err", o, d_own, aligned, plus=dec[li, o])
            fr = _fit(stats, li, "rec", o, d_own, aligned, plus=-dec[li, o])
            nu_e[li, o] = fe / own if own > 1e-12 else float("nan")
            nu_r[li, o] = fr / own if own > 1e-12 else float("nan")
    worst = torch.nan_to_num(torch.maximum(nu_e, nu_r), nan=0.0).amax(-1) if latents else torch.zeros(0)
    return LatentScaling(
        tuple(cc.source_names), latents, [cc.source_names[s] for s in owners], nu_e, nu_r,
        worst > nu_threshold, nu_threshold, aligned,
    )


@torch.no_grad()
def firing_density(cc: Any, data: Any, batch_size: int = 4096) -> torch.Tensor:
    """Fraction of rows of ``data`` ([N, M, d] or {name: [N, d]}) on which each latent fires: [n]."""
    x = _stack(cc, data)
    fired = torch.zeros(cc.n_latents)
    for start in range(0, x.shape[0], batch_size):
        z = cc.encode(x[start : start + batch_size].to(cc.W_enc.device))
        fired += (z > 0).float().sum(0).cpu()
    return fired / max(1, x.shape[0])


def _stack(cc: Any, data: Any) -> torch.Tensor:
    from saekit.errors import DataError

    if isinstance(data, dict):
        missing = [n for n in cc.source_names if n not in data]
        if missing:
            raise DataError(f"latent_scaling data has no source(s) {', '.join(missing)}; the crosscoder reads {list(cc.source_names)}.")
        data = torch.stack([data[n] for n in cc.source_names], dim=1)
    if not isinstance(data, torch.Tensor) or data.dim() != 3:
        raise DataError("latent_scaling data must be a Tensor [N, n_sources, d] or a dict {source name: Tensor [N, d]}.")
    return data


@torch.no_grad()
def _moments(cc: Any, x: torch.Tensor, latents: list[int], batch_size: int) -> dict[str, torch.Tensor]:
    """Sums over rows of f, f², and f·t, t for t in {x, error, reconstruction} (scaled units)."""
    dev = cc.W_enc.device
    idx = torch.as_tensor(latents, dtype=torch.long)
    acc: dict[str, torch.Tensor] = {}
    n = 0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(dev)
        xs = cc.scale_in(xb)
        z = cc.activation(cc.pre_acts(xs))
        rec = cc._decode_scaled(z)
        f = z[:, idx.to(dev)].float().cpu()  # [B, L]
        parts = {"x": xs.float().cpu(), "err": (xs - rec).float().cpu(), "rec": rec.float().cpu()}
        upd = {"f": f.sum(0), "ff": f.pow(2).sum(0)}
        for key, t in parts.items():
            upd[key] = t.sum(0)  # [M, d]
            upd["f" + key] = torch.einsum("bl,bmd->lmd", f, t)
        for key, v in upd.items():
            acc[key] = acc[key] + v if key in acc else v
        n += xb.shape[0]
    acc["n"] = torch.tensor(float(n))
    return acc


def _fit(stats: dict, li: int, target: str, m: int, d_own: torch.Tensor, aligned: bool, plus=None) -> float:
    """Size of the fit of target (+ f·plus) on latent li's activation f, in source m."""
    n, sf, sff = stats["n"], stats["f"][li], stats["ff"][li]
    sft = stats["f" + target][li, m].clone()  # Σ f t
    st = stats[target][m].clone()  # Σ t
    if plus is not None:  # t + f·plus: Σ f t + Σ f² plus, Σ t + Σ f plus
        sft += sff * plus
        st += sf * plus
    if aligned:  # Minder et al.: β = <Σ f t, d> / (‖d‖² Σ f²), the scalar along the owner's decoder
        return float(abs(sft @ d_own) / (d_own.pow(2).sum() * sff).clamp_min(1e-12))
    var = sff - sf * sf / n
    if float(var) <= 1e-12:
        return float("nan")
    return float(((sft - sf * st / n) / var).norm())


def _nan_to_none(rows: list) -> list:
    return [[None if v != v else v for v in row] for row in rows]
