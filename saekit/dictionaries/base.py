"""The shared base of every sparse dictionary (SAE or transcoder).

Parameters are named as in SAELens so a state dict reads the same in both:
``W_enc [d_in, n_latents]``, ``b_enc [n_latents]``, ``W_dec [n_latents, d_out]``,
``b_dec [d_out]``, plus ``W_skip [d_out, d_in]`` for skip transcoders.

A dictionary may carry a scalar ``act_scale`` buffer: inputs (and targets) are multiplied by it
before encoding and outputs divided by it, so training sees activations with E||x||^2 = d_in.
``fold_act_scale()`` folds it into the weights for export.

Subclasses (one file per architecture) implement ``activation(pre) -> z`` and may add a sparsity
term in ``sparsity_loss``; the training objective lives in ``training_loss`` so the trainer
stays architecture-agnostic.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from saekit.config import DictionaryConfig

# sparse_decode: Σ vals·W_dec[idx] (+ b_dec), [B, k] -> [B, d], without the dense [B, n_latents]
# code (Triton on CUDA, embedding_bag elsewhere; TrainConfig.use_kernels picks). Re-exported here.
from saekit.kernels import sparse_decode


@dataclass
class TrainOutput:
    """What one training forward returns to the trainer."""

    loss: torch.Tensor  # scalar, the full objective
    y_hat: torch.Tensor  # [B, d_out] reconstruction in scaled space (detached use only)
    fired: torch.Tensor  # [n_latents] bool: latents active on at least one row of the batch
    l0: torch.Tensor  # scalar: mean number of active latents per row
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # named loss terms (mse, aux, ...)


class ConfigShape:
    """Sizes and conventions read off ``self.cfg``, shared by whole and latent-sharded dictionaries."""

    cfg: DictionaryConfig

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_out(self) -> int:
        return self.cfg.d_out

    @property
    def n_latents(self) -> int:
        return self.cfg.n_latents

    @property
    def apply_b_dec_to_input(self) -> bool:
        # An SAE centres its input on b_dec (SAELens default); a transcoder's input and output
        # live in different spaces, so subtracting the output bias from the input makes no sense.
        return not self.cfg.transcoder

    @property
    def unit_norm_decoder(self) -> bool:
        # A zero-initialised decoder (sparsify's transcoder choice) cannot be renormalised; free
        # norms (SAELens's top-k parametrisation: row_norms, fold_decoder_norms below) are not held at 1.
        return not self.cfg.zero_init_decoder and self.cfg.decoder_norm == "unit"


class SparseDictionary(ConfigShape, nn.Module, abc.ABC):
    """Encoder/decoder with SAELens parameter names; one subclass per architecture."""

    kind: str = ""
    sparse_output: bool = False  # True for kinds whose codes are exactly k per row (topk)

    def __init__(self, cfg: DictionaryConfig):
        super().__init__()
        self.cfg = cfg
        d_in, n, d_out = cfg.d_in, cfg.n_latents, cfg.d_out
        # Real values come from saekit.dictionaries.init (called by create()); zeros here keep
        # construction cheap when a dictionary is about to be loaded from a file.
        self.W_enc = nn.Parameter(torch.zeros(d_in, n))
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.zeros(n, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        if cfg.skip:
            self.W_skip = nn.Parameter(torch.zeros(d_out, d_in))
        else:
            self.W_skip = None
        self.register_buffer("act_scale", torch.ones(()))

    # ------------------------------------------------------------------ encoding
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations for scaled inputs ``x`` [B, d_in] -> [B, n_latents]."""
        if self.apply_b_dec_to_input:
            x = x + self.b_dec.neg()  # = x - b_dec to the bit; its backward skips a [B, d_in] negation
        W_enc, b_enc = self.encoder_weights()
        if x.dim() == 2:
            return torch.addmm(b_enc, x, W_enc)  # fused bias add
        return x @ W_enc + b_enc

    def row_norms(self) -> torch.Tensor | None:
        """[n_latents] the decoder rows' norms when they are free (``decoder_norm`` "free"), else None."""
        if self.cfg.decoder_norm != "free":
            return None
        return self.W_dec.norm(dim=-1).clamp_min(1e-8)

    def encoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_enc, b_enc) as the codes see them: with free decoder norms, each latent's column and
        bias times its row's norm (SAELens's ``rescale_acts_by_decoder_norm``); else the parameters."""
        n = self.row_norms()
        return (self.W_enc, self.b_enc) if n is None else (self.W_enc * n, self.b_enc * n)

    def decoder_weights(self) -> torch.Tensor:
        """W_dec as the reconstruction sees it: unit rows (W_dec / norm) when the norms are free."""
        n = self.row_norms()
        return self.W_dec if n is None else self.W_dec / n[:, None]

    @abc.abstractmethod
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """The sparsifying nonlinearity: pre-activations -> dense codes (inference behaviour)."""

    def init_extra(self) -> None:
        """Initialise architecture-specific parameters (thresholds); called by init_weights."""

    def scale_in(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.W_enc.dtype) * self.act_scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense codes ``z`` [B, n_latents] for activations ``x`` [B, d_in]."""
        return self.activation(self.pre_acts(self.scale_in(x)))

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [B, k], indices [B, k]) of the active latents.

        Top-k kinds return exactly k per row; other kinds return the row's largest ``k`` codes,
        where k is the batch's maximum L0 (padding with zeros).
        """
        z = self.encode(x)
        k = max(1, int((z != 0).sum(-1).max().item()))
        vals, idx = z.topk(k, dim=-1, sorted=False)
        return vals, idx

    # ------------------------------------------------------------------ decoding
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction (without the skip path) from dense codes ``z`` [B, n_latents]."""
        return (z @ self.decoder_weights() + self.b_dec) / self.act_scale

    def decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Reconstruction (without the skip path) from sparse codes (values, indices) [B, k]."""
        return sparse_decode(idx, vals, self.decoder_weights(), self.b_dec) / self.act_scale

    def skip_path(self, x_scaled: torch.Tensor) -> torch.Tensor | float:
        return x_scaled @ self.W_skip.T if self.W_skip is not None else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (SAE) or predicted output activations (transcoder) for ``x``."""
        xs = self.scale_in(x)
        z = self.activation(self.pre_acts(xs))
        return (z @ self.decoder_weights() + self.b_dec + self.skip_path(xs)) / self.act_scale

    # ------------------------------------------------------------------ training
    def train_codes(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-activations, codes) used by the training objective; kinds may override (batchtopk)."""
        pre = self.pre_acts(xs)
        return pre, self.activation(pre)

    def param_groups(self) -> list[dict]:
        """The optimiser's parameter groups; a group's ``lr_scale`` multiplies the base learning
        rate. W_dec steps at ``W_dec_lr_scale`` times the run's rate and b_dec at ``b_dec_lr_scale``
        (3 and 0.3 for top-k kinds by default: a unit-norm decoder row turns only about rate·√d a
        step, and a shared bias moved at the full rate shifts every latent's input at once, which
        killed 40 % of a wide top-k dictionary's latents in a short run; docs/training.md, "The
        decoder's rates"), b_enc at ``b_enc_lr_scale`` when it is set; the other weights at the run's
        rate; kinds add their own groups through ``own_param_groups`` (JumpReLU's thresholds)."""
        own = {
            "W_dec": {"lr_scale": self.cfg.decoder_lr_scale()},  # the trainer resolves it for its run (for_run)
            "b_dec": {"lr_scale": float(self.cfg.b_dec_lr_scale)},
            **self.own_param_groups(),
        }
        if self.cfg.b_enc_lr_scale is not None:  # a group only when set; gated's b_enc is named b_gate
            b_enc = next(name for name, p in self.named_parameters() if p is self.b_enc)
            own[b_enc] = {"lr_scale": float(self.cfg.b_enc_lr_scale)}
        rest = [p for name, p in self.named_parameters() if name not in own]
        return [{"params": rest}] + [{"params": [getattr(self, name)], **opts} for name, opts in own.items()]

    def own_param_groups(self) -> dict[str, dict]:
        """A kind's parameters that step at their own rate: {name: group options}; none by default."""
        return {}

    def sparsity_loss(self, pre: torch.Tensor, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Extra loss terms of the architecture (none by default)."""
        return {}

    def training_loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        dead_mask: torch.Tensor | None = None,
        step: int = 0,
    ) -> TrainOutput:
        """The training objective on one batch (x, and y for transcoders; y = x for an SAE).

        Works in scaled space (``act_scale`` applied to x and y). ``dead_mask`` [n_latents] marks
        latents that have not fired for the dead window (used by AuxK); ``step`` is the
        optimiser step (used by penalty warm-ups).
        """
        xs = self.scale_in(x)
        ys = xs if y is None else self.scale_in(y)
        pre, z = self.train_codes(xs)
        y_hat = z @ self.W_dec + self.b_dec + self.skip_path(xs)
        mse = (y_hat - ys).pow(2).sum(-1).mean()
        terms = {"mse": mse}
        terms.update(self.sparsity_loss(pre, z, step))
        terms.update(self.aux_loss(xs, ys, pre, y_hat, dead_mask))
        loss = sum(terms.values())
        active = z != 0
        return TrainOutput(loss, y_hat, active.any(0), active.sum(-1).float().mean(), terms)

    def aux_loss(self, xs, ys, pre, y_hat, dead_mask) -> dict[str, torch.Tensor]:
        """Loss terms that revive dead latents (AuxK for top-k kinds); none by default."""
        return {}

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Project out the gradient component along each decoder row (keeps rows on the sphere)."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            w = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            g = self.W_dec.grad
            g.sub_((g * w).sum(-1, keepdim=True) * w)

    def after_step(self) -> None:
        """Called after every optimiser step: re-impose constraints."""
        self.set_decoder_norm_to_unit_norm()

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def fold_act_scale(self) -> SparseDictionary:
        """Fold ``act_scale`` into the weights so the dictionary works on raw activations.

        With s = act_scale: (s·x - b_dec)·W_enc = (x - b_dec/s)·(s·W_enc), and the output
        (z·W_dec + b_dec)/s = z·(W_dec/s) + b_dec/s. Codes z (and thresholds) are unchanged;
        the skip path s·x·W_skipᵀ/s needs no change. Decoder rows then have norm 1/s.
        """
        s = float(self.act_scale)
        if s != 1.0:
            self.W_enc.mul_(s)
            self.W_dec.div_(s)
            self.b_dec.div_(s)
            self.act_scale.fill_(1.0)
        return self

    @torch.no_grad()
    def fold_decoder_norms(self) -> SparseDictionary:
        """Free decoder norms n folded into the same function with unit rows: (x·W_enc + b_enc)·n =
        x·(W_enc·n) + b_enc·n and W_dec / n; the config then says "unit" (as SAELens's fold_W_dec_norm
        turns rescale_acts_by_decoder_norm off). No-op for unit rows."""
        n = self.row_norms()
        if n is not None:
            self.W_enc.mul_(n)
            self.b_enc.mul_(n)
            self.W_dec.div_(n[:, None])
            self.cfg = self.cfg.as_saved()
        return self

    def to_inference(self) -> SparseDictionary:
        """Switch to the inference behaviour: free decoder norms folded (fold_decoder_norms), and
        batchtopk's per-token threshold in place of the batch top-k (its override)."""
        return self.fold_decoder_norms()

    def save(self, path, extra: dict | None = None):
        """Write the dictionary folder (SAELens-compatible; saekit.dictionaries.folder)."""
        from saekit.dictionaries.folder import save_dictionary

        return save_dictionary(self, path, extra=extra)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Publish to the Hugging Face Hub in one commit (saekit.dictionaries.publish; it writes and
        uploads only; saekit.io.push_to_hub also checks that saekit reads every folder back)."""
        from saekit.dictionaries.publish import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def extra_repr(self) -> str:
        c = self.cfg
        s = f"kind={c.kind}, d_in={c.d_in}, n_latents={c.n_latents}, d_out={c.d_out}"
        if c.k is not None and c.kind in ("topk", "batchtopk"):
            s += f", k={c.k}"
        if c.skip:
            s += ", skip=True"
        return s
