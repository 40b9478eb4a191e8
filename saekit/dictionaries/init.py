"""Initialisation: random unit-norm decoder rows, encoder = decoder transpose, b_dec at the
geometric median (Weiszfeld) or mean of a sample, zero decoder for transcoders on request.

Every random draw uses a ``torch.Generator`` seeded from the caller, so the same config and
seed give the same bytes.
"""

from __future__ import annotations

import math

import torch

from saekit.dictionaries.base import SparseDictionary

# Added to every initialisation seed: data drawn with torch.Generator().manual_seed(s) (a test set, a
# synthetic world) must not coincide with a dictionary initialised with seed s. Without the offset a
# decoder initialised with seed 0 starts exactly on features drawn as randn(n, d) with seed 0, and a
# recovery benchmark measures its starting point, not its training.
INIT_SEED_OFFSET = 0x5AE_1417


def init_generator(seed: int) -> torch.Generator:
    """The generator of a dictionary's random initialisation for ``seed`` (see INIT_SEED_OFFSET)."""
    return torch.Generator().manual_seed((int(seed) + INIT_SEED_OFFSET) % 2**63)


def geometric_median(points: torch.Tensor, max_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """The point minimising the sum of Euclidean distances to ``points`` [N, d] (Weiszfeld).

    Starts at the mean; each step is the distance-weighted mean. The geometric median is a
    robust centre: a few huge-norm activations (e.g. BOS tokens) do not drag it as they drag
    the mean.
    """
    pts = points.double()
    y = pts.mean(0)
    for _ in range(max_iter):
        dist = (pts - y).norm(dim=-1).clamp_min(1e-12)
        w = 1.0 / dist
        y_new = (w[:, None] * pts).sum(0) / w.sum()
        shift = (y_new - y).norm()
        y = y_new
        if shift <= tol * max(1.0, float(y.norm())):
            break
    return y.to(points.dtype)


@torch.no_grad()
def init_weights(sae: SparseDictionary, seed: int = 0) -> SparseDictionary:
    """Initialise encoder, decoder and biases of ``sae`` from ``seed`` (b_dec set to zero)."""
    cfg = sae.cfg
    gen = init_generator(seed)
    dtype = sae.W_dec.dtype
    w_dec = torch.randn(cfg.n_latents, cfg.d_out, generator=gen, dtype=torch.float32)
    w_dec /= w_dec.norm(dim=-1, keepdim=True)
    if cfg.decoder_norm == "free":
        w_dec *= cfg.decoder_init_norm  # SAELens's decoder_init_norm (Anthropic's April 2024 update: 0.1)
    if cfg.init_encoder_from_decoder and cfg.d_in == cfg.d_out and not cfg.zero_init_decoder:
        # Gao et al. 2024: tied init puts every latent's encoder on its own decoder direction,
        # so each latent fires on the inputs it reconstructs from the first step: fewer dead.
        w_enc = w_dec.T.clone()
    else:
        bound = 1.0 / math.sqrt(cfg.d_in)  # nn.Linear's default (Kaiming-uniform) scale
        w_enc = torch.empty(cfg.d_in, cfg.n_latents).uniform_(-bound, bound, generator=gen)
    if cfg.zero_init_decoder:
        w_dec.zero_()
    sae.W_dec.copy_(w_dec.to(dtype))
    sae.W_enc.copy_(w_enc.to(dtype))
    sae.b_enc.zero_()
    sae.b_dec.zero_()
    if sae.W_skip is not None:
        sae.W_skip.zero_()  # the skip path starts as nothing and learns the linear part
    sae.init_extra()
    return sae


def _b_dec_value(how: str, sample: torch.Tensor) -> torch.Tensor | None:
    if how == "zero" or sample.numel() == 0:
        return None
    return sample.float().mean(0) if how == "mean" else geometric_median(sample.float())


@torch.no_grad()
def init_b_dec(sae: SparseDictionary, target_sample: torch.Tensor) -> SparseDictionary:
    """Set b_dec from a sample of (scaled) targets [N, d_out] per ``cfg.b_dec_init``; a
    crosscoder's sample [N, n_sources, d] sets one b_dec per source."""
    per_source = target_sample.dim() == 3
    samples = target_sample.unbind(1) if per_source else [target_sample]
    biases = sae.b_dec.unbind(0) if per_source else [sae.b_dec]
    for bias, sample in zip(biases, samples):
        value = _b_dec_value(sae.cfg.b_dec_init, sample)
        bias.zero_() if value is None else bias.copy_(value.to(bias.dtype))
    return sae
