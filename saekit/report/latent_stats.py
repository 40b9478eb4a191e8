"""Per-latent statistics kept while activations stream past, in memory fixed by the latent count.

For every latent: firing count, sum and max; the ``n_top`` highest activations with the latent's
activations on a token window around each; a uniform sample (reservoir) of ``n_samples`` firing
positions with their windows, from which contexts at activation quantiles are drawn; and an exact
histogram of the firing activations.

The reservoir gives each firing position an independent uniform key and keeps the positions with
the largest keys: a uniform sample without replacement, merged batch by batch with ``topk``. The
histogram has ``n_bins`` (a power of two) equal bins over [0, 2^e], e the smallest integer with
max ≤ 2^e; when a larger value arrives, e grows and adjacent bins are summed in pairs, so counts
stay exact without knowing the maximum in advance.

Memory: n_latents × (n_top + n_samples) × (window + 2) floats plus n_latents × n_bins counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_EMPTY_EXP = -10_000  # histogram exponent of a latent that has not fired yet


@dataclass
class Kept:
    """A fixed number of kept positions per latent: values, flat token positions, windows."""

    values: torch.Tensor  # [L, K], -inf where empty
    positions: torch.Tensor  # [L, K] int64, -1 where empty
    windows: torch.Tensor  # [L, K, W] the latent's activation around the position, NaN off the row
    keys: torch.Tensor  # [L, K] what decides which are kept (the value itself, or a random key)

    @classmethod
    def empty(cls, n_latents: int, k: int, width: int) -> Kept:
        return cls(
            torch.full((n_latents, k), float("-inf")),
            torch.full((n_latents, k), -1, dtype=torch.long),
            torch.full((n_latents, k, width), float("nan")),
            torch.full((n_latents, k), float("-inf")),
        )

    def merge(self, other: Kept) -> None:
        k = self.keys.shape[1]
        keys = torch.cat([self.keys, other.keys], 1)
        top, idx = keys.topk(k, dim=1)
        self.keys = top
        self.values = torch.cat([self.values, other.values], 1).gather(1, idx)
        self.positions = torch.cat([self.positions, other.positions], 1).gather(1, idx)
        w = torch.cat([self.windows, other.windows], 1)
        self.windows = w.gather(1, idx[..., None].expand(-1, -1, w.shape[2]))


class LatentStats:
    """Streaming accumulator; feed codes [rows, n_ctx, n_latents] with ``update``."""

    def __init__(
        self,
        n_latents: int,
        n_top: int = 12,
        n_samples: int = 24,
        before: int = 8,
        after: int = 3,
        n_bins: int = 32,
        seed: int = 0,
    ) -> None:
        if n_bins & (n_bins - 1):
            raise ValueError("n_bins must be a power of two")
        self.n_latents, self.n_bins, self.before, self.after = n_latents, n_bins, before, after
        width = before + after + 1
        self.count = torch.zeros(n_latents, dtype=torch.long)
        self.sum = torch.zeros(n_latents, dtype=torch.float64)
        self.max = torch.zeros(n_latents)
        self.top = Kept.empty(n_latents, n_top, width)
        self.samples = Kept.empty(n_latents, n_samples, width)
        self.hist = torch.zeros(n_latents, n_bins, dtype=torch.long)
        self.hist_exp = torch.full((n_latents,), _EMPTY_EXP, dtype=torch.long)
        self.n_tokens = 0
        self.gen = torch.Generator().manual_seed(seed)

    def update(self, z: torch.Tensor, first_pos: int) -> None:
        """Codes ``z`` [rows, n_ctx, L] of whole rows whose first token has flat index ``first_pos``.

        Works on the firing entries only (sorted by latent), so the cost beyond one pass over z
        grows with L0, not with the number of latents.
        """
        rows, n_ctx, n_lat = z.shape
        flat = z.reshape(-1, n_lat).float()
        tok, lat = (flat > 0).nonzero(as_tuple=True)
        val = flat[tok, lat]
        self.n_tokens += flat.shape[0]
        self.count += torch.bincount(lat, minlength=n_lat)
        self.sum.index_add_(0, lat, val.double())
        self.max.scatter_reduce_(0, lat, val, reduce="amax")
        self.top.merge(self._kept(flat, tok, lat, val, val, self.top.keys.shape[1], n_ctx, first_pos))
        keys = torch.rand(len(val), generator=self.gen)  # uniform keys: the largest K are a uniform sample
        self.samples.merge(self._kept(flat, tok, lat, val, keys, self.samples.keys.shape[1], n_ctx, first_pos))
        self._histogram(lat, val)

    def _kept(self, flat, tok, lat, val, key, k: int, n_ctx: int, first_pos: int) -> Kept:
        """Each latent's ``k`` entries of highest ``key`` in this batch, with their windows."""
        order = torch.sort(key, descending=True, stable=True).indices
        order = order[torch.sort(lat[order], stable=True).indices]  # by latent, key descending within
        tok, lat, val, key = tok[order], lat[order], val[order], key[order]
        counts = torch.bincount(lat, minlength=self.n_latents)
        rank = torch.arange(len(lat)) - (torch.cumsum(counts, 0) - counts)[lat]
        keep = rank < k
        tok, lat, val, key, rank = tok[keep], lat[keep], val[keep], key[keep], rank[keep]
        out = Kept.empty(self.n_latents, k, self.before + self.after + 1)
        out.values[lat, rank] = val
        out.keys[lat, rank] = key
        out.positions[lat, rank] = tok + first_pos
        row, col = tok // n_ctx, tok % n_ctx
        cols = col[:, None] + torch.arange(-self.before, self.after + 1)
        inside = (cols >= 0) & (cols < n_ctx)
        src = row[:, None] * n_ctx + cols.clamp(0, n_ctx - 1)
        out.windows[lat, rank] = flat[src, lat[:, None].expand_as(src)].masked_fill(~inside, float("nan"))
        return out

    def _histogram(self, lat: torch.Tensor, val: torch.Tensor) -> None:
        bmax = torch.zeros(self.n_latents).scatter_reduce_(0, lat, val, reduce="amax")
        need = torch.where(bmax > 0, torch.ceil(torch.log2(bmax.clamp_min(1e-30))).long(), self.hist_exp)
        grow = need > self.hist_exp
        for shift in torch.unique((need - self.hist_exp)[grow]).tolist():
            sel = grow & (need - self.hist_exp == shift)
            sub = self.hist[sel]
            merged = torch.zeros_like(sub)
            if shift >= 30 or (1 << shift) >= self.n_bins:
                merged[:, 0] = sub.sum(1)
            else:
                f = 1 << shift
                merged[:, : self.n_bins // f] = sub.reshape(sub.shape[0], -1, f).sum(2)
            self.hist[sel] = merged
        self.hist_exp = torch.where(grow, need, self.hist_exp)
        top = torch.exp2(self.hist_exp[lat].double())
        b = (val.double() / top * self.n_bins).long().clamp(0, self.n_bins - 1)
        self.hist.view(-1).index_add_(0, lat * self.n_bins + b, torch.ones_like(b))

    def freeze(self) -> LatentStats:
        """Turn every tensor into a numpy array (fast element access for writing pages); no more updates."""
        for name in ("count", "sum", "max", "hist", "hist_exp"):
            setattr(self, name, getattr(self, name).numpy())
        for kept in (self.top, self.samples):
            for name in ("values", "positions", "windows", "keys"):
                setattr(kept, name, getattr(kept, name).numpy())
        return self

    def hist_edges(self, latent: int) -> list[float]:
        """Bin edges of a latent's histogram (n_bins + 1 values from 0)."""
        e = int(self.hist_exp[latent])
        top = 2.0**e if e != _EMPTY_EXP else 1.0
        return [top * i / self.n_bins for i in range(self.n_bins + 1)]
