"""Dataclass configs with validation: the one place for defaults and for config errors.

Every check raises ConfigError with one sentence naming the field, its value and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from saekit.errors import ConfigError
from saekit.kinds import KINDS

VARIANTS = ("baseline", "l1_weights", "act_l1", "pruned", "solu", "topographic", "random")
POSITIONAL_EMBEDDINGS = ("standard", "rotary")
MAX_OF_K_VARIANTS = ("baseline", "l1_weights", "act_l1", "random")  # those that apply to an attention-only model
# Default regulariser strength per variant (chosen so the tiny demo model shows a clear effect).
DEFAULT_COEF = {
    "baseline": 0.0,
    "l1_weights": 1e-5,
    "act_l1": 3e-2,
    "pruned": 0.8,  # target fraction of MLP weights set to zero
    "solu": 0.0,
    "topographic": 3.0,
    "random": 0.0,
}
# read off the architecture registry (saekit.kinds)
DICTIONARY_KINDS = tuple(KINDS)
CROSSCODER_KINDS = tuple(k for k, f in KINDS.items() if f.crosscoder)
TOPK_KINDS = tuple(k for k, f in KINDS.items() if f.uses_k)  # kinds whose L0 is set by k
JUMPRELU_LOSSES = ("step", "tanh", "quadratic")
RELU_PENALTIES = ("l1", "l1_decnorm", "tanh", "log", "lp")


# a relu crosscoder keeps Anthropic's 5 (its λ multiplies the sum of its sources' decoder norms;
# not re-measured); a single dictionary's λ is its kind's row in saekit.kinds
CROSSCODER_SPARSITY_COEF = 5.0


def default_sparsity_coef(kind: str, n_sources: int = 1) -> float:
    """The λ a dictionary of ``kind`` gets when ``sparsity_coef`` is not given (top-k kinds: unused)."""
    if n_sources > 1:
        return CROSSCODER_SPARSITY_COEF
    coef = KINDS[kind].default_sparsity_coef if kind in KINDS else None
    return 5.0 if coef is None else coef


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
        f"{name} must be a positive number, got {value!r}.",
    )


class _Config:
    """Shared helpers: to/from dict, with unknown keys reported clearly."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    _RETIRED: dict[str, Any] = {}  # field -> its old default: dropped when read back from old files

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        for key, old_default in cls._RETIRED.items():
            if key in data and data.pop(key) != old_default:
                raise ConfigError(f"{cls.__name__}.{key} is no longer supported; remove it from the configuration.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(names))}."
            )
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass
class ModelConfig(_Config):
    """A tiny transformer-lens language model and how to train one variant of it."""

    variant: str = "baseline"
    coef: float | None = None  # regulariser strength; None = DEFAULT_COEF[variant]
    group: str | None = None  # comparison group name (saekit compare); None = the variant (and coef)
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 128
    vocab_size: int = 4096
    act_fn: str = "gelu"  # the `solu` variant switches this to "solu_ln"
    # "standard": a learned W_pos added to the residual stream; "rotary": rotary positions in attention
    # (as Pythia), nothing positional in the residual stream (docs/comparing.md, "Random control")
    positional_embedding: str = "standard"
    # multiplies the initial W_O and W_out (the projections that write into the residual stream) after
    # transformer-lens's initialisation; < 1 makes a random-weights model's stream mostly its token
    # embedding (docs/comparing.md, "Random control: which definition"); 1 = transformer-lens's own
    out_init_scale: float = 1.0
    # training
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    seed: int = 0
    # pruning schedule (variant `pruned`): prune from prune_start to prune_end fraction of steps
    prune_start: float = 0.3
    prune_end: float = 0.7
    prune_every: int = 20
    # TopoLoss: neurons on a sheet of shape topo_sheet (rows x cols = d_mlp); None = nearly square
    topo_sheet: tuple[int, int] | None = None
    topo_downsample: float = 0.5  # blur factor of TopoLoss (fraction of the sheet kept)
    eval_tokens: int = 65536
    device: str = "auto"

    def __post_init__(self) -> None:
        _require(
            self.variant in VARIANTS,
            f"variant {self.variant!r} is not known; expected one of {', '.join(VARIANTS)}.",
        )
        if self.coef is None:
            self.coef = DEFAULT_COEF[self.variant]
        _require(
            isinstance(self.coef, (int, float)) and self.coef >= 0,
            f"coef must be a number ≥ 0, got {self.coef!r}.",
        )
        if self.variant == "pruned":
            _require(0 < self.coef < 1, f"coef for variant 'pruned' is the target sparsity and must be in (0, 1), got {self.coef}.")
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "vocab_size", "steps", "batch_size"):
            _positive(name, getattr(self, name))
            _require(float(getattr(self, name)).is_integer(), f"{name} must be an integer, got {getattr(self, name)!r}.")
        _positive("lr", self.lr)
        _require(
            self.positional_embedding in POSITIONAL_EMBEDDINGS,
            f"positional_embedding must be one of {', '.join(POSITIONAL_EMBEDDINGS)}, got {self.positional_embedding!r}.",
        )
        _require(
            isinstance(self.out_init_scale, (int, float)) and not isinstance(self.out_init_scale, bool)
            and 0 < self.out_init_scale <= 1,
            f"out_init_scale must be a number in (0, 1], got {self.out_init_scale!r}.",
        )
        _require(self.d_model % self.n_heads == 0, f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads}).")
        if self.topo_sheet is not None:
            self.topo_sheet = tuple(self.topo_sheet)
            _require(
                len(self.topo_sheet) == 2 and self.topo_sheet[0] * self.topo_sheet[1] == self.d_mlp,
                f"topo_sheet {self.topo_sheet} must be two numbers whose product is d_mlp ({self.d_mlp}).",
            )
        if self.variant == "solu":
            self.act_fn = "solu_ln"


@dataclass
class DictionaryConfig(_Config):
    """A sparse dictionary: architecture, sizes and the sparsity mechanism.

    kind: relu | topk | batchtopk | jumprelu | matryoshka | abstopk | gated. ``d_out`` different from ``d_in`` (or
    ``transcoder=True``) makes a transcoder; ``skip=True`` adds a linear skip path W_skip.
    """

    kind: str = "topk"
    d_in: int = 0
    n_latents: int = 0
    k: int | None = None  # topk / batchtopk: active latents per token
    d_out: int | None = None  # None = d_in (an autoencoder)
    transcoder: bool = False
    skip: bool = False
    # relu
    penalty: str = "l1"  # l1 | l1_decnorm | tanh | log | lp
    sparsity_coef: float | None = None  # λ (also the L0 coefficient of jumprelu); None = the kind's default_sparsity_coef (saekit.kinds)
    lp: float = 0.5
    sparsity_warmup_steps: int = 0
    # relu, penalty "lp": p annealed from 1 to ``lp`` (Karvonen et al. 2024); 0 steps = fixed p. None (the
    # default) = over the run: p starts to fall at a third of the steps and reaches lp at the last step
    # (resolved by the trainer, ``for_run``; docs/dictionaries.md "Annealed Lp")
    lp_anneal_start: int | None = None  # step at which p starts to fall
    lp_anneal_steps: int | None = None  # steps over which p goes from 1 to lp
    lp_anneal_updates: int = 10  # p falls in this many equal stages (λ rescaled at each)
    # topk
    k_aux: int | None = None  # None = d_in // 2
    aux_coef: float | None = None  # None = DEFAULT_AUX_COEF (a crosscoder: Gao et al.'s 1/32)
    multi_topk: bool = False
    # jumprelu
    # STE bandwidth ε and initial θ, in the units the dictionary sees (normalised: E||x||² = d_in, where
    # off-feature pre-activations have std ≈ 1); measured in docs/dictionaries.md (JumpReLU)
    jumprelu_bandwidth: float = 0.2  # None in files before session 6 (it meant 0.001 / 0.05): read as 0.2
    jumprelu_init_threshold: float = 0.25
    jumprelu_threshold_lr_scale: float = 1.0  # θ's rate = max(this × lr, √λ/steps): θ must climb ≈ √λ
    jumprelu_init_encoder_scale: float = 0.3  # W_enc starts at this × its usual init (W_decᵀ when tied)
    jumprelu_sparsity_loss: str = "step"  # step (L0) | tanh (Anthropic 2025) | quadratic (target L0)
    jumprelu_tanh_scale: float = 4.0
    target_l0: float | None = None  # quadratic: the L0 the penalty pulls toward
    # matryoshka: nested prefix widths (increasing, last = n_latents); None = n/8, n/4, n/2, n
    matryoshka_widths: tuple[int, ...] | None = None
    # weight of each inner prefix's loss (the full dictionary's is 1); 1 = Bussmann et al. and SAELens
    matryoshka_inner_weight: float = 0.15
    # initialisation
    init_encoder_from_decoder: bool = True
    b_dec_init: str = "geometric_median"  # geometric_median | mean | zero
    # W_dec's and b_dec's rates as multiples of the run's; None = the kind's ``decoder_rates`` in
    # saekit.kinds (3 and 0.3 for topk, batchtopk, matryoshka; else 1 and 1; docs/training.md), W_dec's
    # raised in crowded dictionaries and more so in long runs (resolved by the trainer, ``for_run``)
    W_dec_lr_scale: float | None = None
    b_dec_lr_scale: float | None = None
    # b_enc's rate as a multiple of the run's; None = the run's (2x in long runs measured as a tie, session 17)
    b_enc_lr_scale: float | None = None
    zero_init_decoder: bool = False  # sparsify's choice for transcoders
    # "unit": decoder rows held at norm 1 (gradient projected, rows renormalised each step). "free"
    # (topk only): SAELens's top-k parametrisation (rescale_acts_by_decoder_norm): rows of free norm
    # n starting at ``decoder_init_norm``, codes scaled by n, decoded through W_dec / n; folded into
    # a unit-norm dictionary when training ends (docs/training.md "SAELens's decoder parametrisation")
    decoder_norm: str = "unit"
    decoder_init_norm: float = 0.1
    seed: int | None = None  # initialisation seed; None = TrainConfig.seed (set it to sweep seeds)
    # crosscoder: n_sources ≥ 2 reads the same tokens from that many models (saekit.dictionaries.crosscoder)
    n_sources: int = 1
    source_names: tuple[str, ...] | None = None  # filled by the trainer from the source dict
    # metadata (file formats): where the activations come from
    hook_name: str = ""  # the hookpoint read (a transcoder's input)
    hook_name_out: str = ""  # a transcoder's output hookpoint ("" for an autoencoder)
    model_name: str = ""
    variant: str = ""

    def __post_init__(self) -> None:
        _require(
            self.kind in DICTIONARY_KINDS,
            f"kind {self.kind!r} is not known; expected one of {', '.join(DICTIONARY_KINDS)}.",
        )
        for name in ("d_in", "n_latents"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"{name} must be a positive integer, got {value!r}.",
            )
        if self.d_out is None:
            self.d_out = self.d_in
        _require(isinstance(self.d_out, int) and self.d_out > 0, f"d_out must be a positive integer, got {self.d_out!r}.")
        if self.d_out != self.d_in:
            self.transcoder = True
        if self.skip:
            self.transcoder = True
        if self.kind in TOPK_KINDS:
            _require(self.k is not None, f"kind {self.kind!r} needs k (active latents per token).")
            _require(
                isinstance(self.k, int) and 0 < self.k <= self.n_latents,
                f"k must be an integer in 1..n_latents ({self.n_latents}), got {self.k!r}.",
            )
        if self.sparsity_coef is None:
            self.sparsity_coef = default_sparsity_coef(self.kind, self.n_sources)
        if self.b_dec_lr_scale is None:
            self.b_dec_lr_scale = self._kind_decoder_rates()[1]
        _require(self.penalty in RELU_PENALTIES, f"penalty {self.penalty!r} is not known; expected one of {', '.join(RELU_PENALTIES)}.")
        _require(self.sparsity_coef >= 0, f"sparsity_coef must be ≥ 0, got {self.sparsity_coef}.")
        _require(0 < self.lp < 1 or self.penalty != "lp", f"lp must be in (0, 1) for penalty 'lp', got {self.lp}.")
        _require(
            self.b_dec_init in ("geometric_median", "mean", "zero"),
            f"b_dec_init {self.b_dec_init!r} is not known; expected geometric_median, mean or zero.",
        )
        for name in ("W_dec_lr_scale", "b_dec_lr_scale", "b_enc_lr_scale"):
            value = getattr(self, name)
            _require(value is None or value >= 0, f"{name} must be ≥ 0 (0 keeps the parameter where it starts), got {value}.")
        self._check_new_kinds()
        self._check_decoder_norm()
        if self.k_aux is None:
            self.k_aux = max(1, min(self.n_latents, self.d_in // 2))
        if self.aux_coef is None:  # crosscoders keep Gao et al.'s value (not re-measured)
            self.aux_coef = DEFAULT_AUX_COEF if self.n_sources == 1 else 1 / 32
        _require(self.aux_coef >= 0, f"aux_coef must be ≥ 0, got {self.aux_coef}.")
        self._check_crosscoder()

    def _kind_decoder_rates(self) -> tuple[float, float]:
        """The kind's (W_dec, b_dec) multiples (saekit.kinds; measured on single-source dictionaries only)."""
        return KINDS[self.kind].decoder_rates if self.n_sources == 1 else (1.0, 1.0)

    def crowding_ramp(self) -> float:
        """0-1: how far the crowded-dictionary rules apply (0 at crowding c ≤ 1, 1 at c ≥ 2; see
        default_w_dec_lr_scale); 0 for kinds whose decoder keeps the run's rate and for crowded
        kinds without k."""
        if self._kind_decoder_rates()[0] <= 1.0 or self.k is None:
            return 0.0
        return crowding_ramp(self.n_latents, self.d_out, self.k)

    def long_run_weight(self, steps: int, spread: float) -> float:
        """0-1: how far the long-run rule of crowded dictionaries applies to this one in a run of
        ``steps`` steps on data of that ``spread`` (saekit.config.long_run_weight), times the
        kind's share (saekit.kinds ``long_run_share``: half for batchtopk and matryoshka); 0 when
        ``W_dec_lr_scale`` is given, since the rule sets the decoder's and the base rate together
        (the trainer also passes 0 when ``TrainConfig.lr`` is given), and for free decoder norms."""
        if self.W_dec_lr_scale is not None or steps < LONG_RUN_STEPS or self.decoder_norm == "free":
            return 0.0
        return long_run_weight(self.crowding_ramp() * KINDS[self.kind].long_run_share, spread)

    def decoder_lr_scale(self, long_run: float = 0.0) -> float:
        """W_dec's rate multiple: ``W_dec_lr_scale``, or the default rule (default_w_dec_lr_scale)
        with the long-run rule at weight ``long_run`` (long_run_weight)."""
        if self.W_dec_lr_scale is not None:
            return float(self.W_dec_lr_scale)
        if self.decoder_norm == "free":  # a free row turns by about rate / its norm: no multiple of its own
            return 1.0
        kind_scale = self._kind_decoder_rates()[0]
        return default_w_dec_lr_scale(kind_scale, self.n_latents, self.d_out, self.k, long_run)

    def for_run(self, total_steps: int, long_run: float = 0.0) -> DictionaryConfig:
        """This config with the defaults that depend on the run filled in (the trainer calls it):
        W_dec's rate multiple with the long-run rule at weight ``long_run`` (decoder_lr_scale,
        long_run_weight), and annealed Lp's schedule, p falling from a third of the steps to the
        last one. Measured on the planted worlds (docs/dictionaries.md): later starts recover more
        features than Karvonen et al.'s 15 %, a fixed p = 0.5 from step 0 far fewer (MMCS 0.67 vs
        0.98)."""
        cfg = self
        if cfg.W_dec_lr_scale is None:
            cfg = dataclasses.replace(cfg, W_dec_lr_scale=cfg.decoder_lr_scale(long_run))
        return cfg._lp_for_run(total_steps)

    def _lp_for_run(self, total_steps: int) -> DictionaryConfig:
        if self.penalty != "lp" or None not in (self.lp_anneal_start, self.lp_anneal_steps):
            return self
        if self.lp_anneal_start is None:  # a third of the run; 0 when only the length was given (as before)
            start = total_steps // 3 if self.lp_anneal_steps is None else 0
        else:
            start = self.lp_anneal_start
        steps = max(1, total_steps - 1 - start) if self.lp_anneal_steps is None else self.lp_anneal_steps
        return dataclasses.replace(self, lp_anneal_start=start, lp_anneal_steps=steps)

    def _check_crosscoder(self) -> None:
        n = self.n_sources
        _require(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1,
            f"n_sources must be a positive integer, got {n!r}.",
        )
        if self.source_names is not None:
            self.source_names = tuple(str(s) for s in self.source_names)
            _require(
                len(self.source_names) == n and len(set(self.source_names)) == n,
                f"source_names must be {n} distinct names (n_sources={n}), got {list(self.source_names)}.",
            )
        if n == 1:
            return
        _require(
            self.kind in CROSSCODER_KINDS,
            f"a crosscoder (n_sources={n}) has kind relu, topk or batchtopk, got {self.kind!r}.",
        )
        _require(not self.transcoder, "a crosscoder reconstructs its inputs; d_out, transcoder and skip are not supported with n_sources > 1.")

    def as_saved(self) -> DictionaryConfig:
        """The config of this dictionary's files: free decoder norms are folded into unit rows
        when it is exported (SparseDictionary.fold_decoder_norms), so the files hold unit ones."""
        return dataclasses.replace(self, decoder_norm="unit") if self.decoder_norm == "free" else self

    def _check_decoder_norm(self) -> None:
        _require(self.decoder_norm in ("unit", "free"), f"decoder_norm {self.decoder_norm!r} is not known; expected unit or free.")
        if self.decoder_norm == "unit":
            return
        _require(
            self.kind == "topk" and self.n_sources == 1 and not self.transcoder,
            f"decoder_norm 'free' is SAELens's top-k parametrisation: it needs a top-k autoencoder (kind 'topk', "
            f"one source, no transcoder), got kind {self.kind!r}, n_sources {self.n_sources}, transcoder {self.transcoder}.",
        )
        _require(self.decoder_init_norm > 0, f"decoder_init_norm must be > 0, got {self.decoder_init_norm}.")

    def _check_new_kinds(self) -> None:
        """Fields of the matryoshka kind, annealed Lp and the JumpReLU losses."""
        for name in ("lp_anneal_start", "lp_anneal_steps"):
            v = getattr(self, name)
            if v is None and self.penalty != "lp":
                setattr(self, name, v := 0)  # no annealing without the lp penalty
            _require(v is None or (isinstance(v, int) and v >= 0), f"{name} must be an integer ≥ 0, got {v!r}.")
        _require(
            isinstance(self.lp_anneal_updates, int) and self.lp_anneal_updates > 0,
            f"lp_anneal_updates must be a positive integer, got {self.lp_anneal_updates!r}.",
        )
        _require(
            not self.lp_anneal_steps or self.penalty == "lp",
            f"lp_anneal_steps={self.lp_anneal_steps} needs penalty 'lp', got penalty {self.penalty!r}.",
        )
        _require(
            self.jumprelu_sparsity_loss in JUMPRELU_LOSSES,
            f"jumprelu_sparsity_loss {self.jumprelu_sparsity_loss!r} is not known; expected one of {', '.join(JUMPRELU_LOSSES)}.",
        )
        if self.kind == "jumprelu" and self.jumprelu_sparsity_loss == "quadratic":
            _require(
                self.target_l0 is not None and self.target_l0 > 0,
                f"jumprelu_sparsity_loss 'quadratic' needs target_l0 > 0, got {self.target_l0!r}.",
            )
        if self.jumprelu_bandwidth is None:  # a file written before session 6 (None meant a per-loss default)
            self.jumprelu_bandwidth = 0.2
        for name in ("jumprelu_bandwidth", "jumprelu_threshold_lr_scale", "jumprelu_init_encoder_scale"):
            _positive(name, getattr(self, name))
        _require(
            isinstance(self.jumprelu_init_threshold, (int, float)) and self.jumprelu_init_threshold >= 0,
            f"jumprelu_init_threshold must be a number ≥ 0, got {self.jumprelu_init_threshold!r}.",
        )
        if self.kind == "matryoshka":
            w = self.matryoshka_widths
            if w is None:
                w = tuple(x for x in (self.n_latents // 8, self.n_latents // 4, self.n_latents // 2) if x > 0)
            w = tuple(w)
            if not w or w[-1] != self.n_latents:
                w = w + (self.n_latents,)
            _require(
                all(isinstance(a, int) and a > 0 for a in w) and all(a < b for a, b in zip(w, w[1:])),
                f"matryoshka_widths must be increasing positive integers ending at n_latents ({self.n_latents}), got {list(w)}.",
            )
            self.matryoshka_widths = w
            _require(
                isinstance(self.matryoshka_inner_weight, (int, float)) and self.matryoshka_inner_weight >= 0,
                f"matryoshka_inner_weight must be a number ≥ 0, got {self.matryoshka_inner_weight!r}.",
            )
        elif self.matryoshka_widths is not None:
            self.matryoshka_widths = tuple(self.matryoshka_widths)


@dataclass
class TrainConfig(_Config):
    """How a dictionary is trained: tokens, batches, optimiser, logging and checkpoints."""

    batch_size: int = 4096
    lr: float | None = None  # None = default_lr(n_latents, batch_size, steps, the data's spread) below
    total_tokens: int = 50_000_000
    seed: int = 0
    lr_warmup_steps: int | None = None  # None = 5 % of the steps, at most 100
    lr_decay_fraction: float = 0.2  # linear decay to 0 over the last fraction of steps
    tail_average: float | None = None  # the saved weights are their mean over this last fraction of steps;
    # 0 = the last step's weights; None = the long-run rule's (tail_fraction below)
    adam_betas: tuple[float, float] | None = None  # None = default_betas(steps) below
    grad_clip: float = 1.0
    autocast_bf16: bool = False
    dead_tokens: int | None = None  # None = min(10M, total_tokens // 5)
    resample_dead_every: int | None = None  # relu only: Anthropic-style resampling period in steps
    normalize: bool | None = None  # scale activations so E||x||^2 = d_in; None = every kind but crosscoders
    # (see normalizes); folded into the weights at save, so files work on raw activations
    checkpoint_every: int | None = None  # steps; None = no periodic checkpoints
    out_dir: str | None = None
    log_every: int = 10
    use_kernels: str = "auto"  # auto | triton | torch | dense (saekit.kernels backend for sparse decode)
    device: str = "auto"
    # `wandb` (never wired to anything) was removed; files that stored its default still load.
    _RETIRED = {"wandb": False}

    def __post_init__(self) -> None:
        _require(
            isinstance(self.batch_size, int) and self.batch_size > 0,
            f"batch_size must be a positive integer, got {self.batch_size!r}.",
        )
        _require(self.lr is None or (isinstance(self.lr, (int, float)) and self.lr > 0), f"lr must be > 0, got {self.lr!r}.")
        _require(
            isinstance(self.total_tokens, int) and self.total_tokens > 0,
            f"total_tokens must be a positive integer, got {self.total_tokens!r}.",
        )
        _require(
            self.lr_warmup_steps is None or (isinstance(self.lr_warmup_steps, int) and self.lr_warmup_steps >= 0),
            f"lr_warmup_steps must be an integer ≥ 0 (or None for the default), got {self.lr_warmup_steps!r}.",
        )
        _require(0 <= self.lr_decay_fraction <= 1, f"lr_decay_fraction must be in [0, 1], got {self.lr_decay_fraction}.")
        _require(
            self.tail_average is None
            or (isinstance(self.tail_average, (int, float)) and not isinstance(self.tail_average, bool) and 0 <= self.tail_average <= 1),
            f"tail_average must be a fraction of the steps in [0, 1] (0 = keep the last step's weights), got {self.tail_average!r}.",
        )
        _require(self.use_kernels in ("auto", "triton", "torch", "dense"), f"use_kernels must be auto, triton, torch or dense, got {self.use_kernels!r}.")
        if self.adam_betas is not None:
            _require(
                isinstance(self.adam_betas, (tuple, list)) and len(self.adam_betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.adam_betas),
                f"adam_betas must be two numbers in [0, 1) (or None for the default), got {self.adam_betas!r}.",
            )  # fmt: skip
            self.adam_betas = tuple(float(b) for b in self.adam_betas)
        _require(self.lr is None or math.isfinite(self.lr), f"lr must be a finite number > 0, got {self.lr!r}.")
        _require(
            self.checkpoint_every is None or (isinstance(self.checkpoint_every, int) and self.checkpoint_every > 0),
            f"checkpoint_every must be a positive number of steps (omit it for no periodic checkpoints), "
            f"got {self.checkpoint_every!r}.",
        )

    @property
    def steps(self) -> int:
        return max(1, self.total_tokens // self.batch_size)

    def dead_token_window(self, n_latents: int | None = None, k: int | None = None) -> int:
        """Tokens without firing after which a latent counts as dead (and AuxK trains it):
        ``dead_tokens``, or a fifth of the run (at most 10M); for a top-k kind (``k`` given) at most
        the tokens in which a latent of average frequency (k / n_latents) fires DEAD_WINDOW_FIRINGS
        times or DEAD_WINDOW_RUN_FRACTION of the run, whichever is longer, but at least
        DEAD_WINDOW_BATCHES batches and at most DEAD_WINDOW_MAX_FIRINGS firings, so that AuxK
        reaches a dying latent within a few steps of a short run (docs/training.md)."""
        if self.dead_tokens is not None:
            return self.dead_tokens
        window = min(10_000_000, max(self.batch_size, self.total_tokens // 5))
        if k and n_latents:
            lo = max(DEAD_WINDOW_BATCHES * self.batch_size, DEAD_WINDOW_FIRINGS * n_latents // k)
            hi = max(lo, DEAD_WINDOW_MAX_FIRINGS * n_latents // k)
            window = min(window, hi, max(lo, int(self.total_tokens * DEAD_WINDOW_RUN_FRACTION)))
        return window

    def learning_rate(self, n_latents: int, spread: float = 1.0, long_run: float = 0.0) -> float:
        """The base learning rate: ``lr``, or the default rule for this width, run length, the
        data's ``spread`` and the weight of the long-run rule of crowded dictionaries (``long_run``,
        DictionaryConfig.long_run_weight; see default_lr)."""
        if self.lr is not None:
            return float(self.lr)
        return default_lr(n_latents, self.batch_size, self.steps, spread, long_run)

    def rate_follows_spread(self, crowded: bool = False) -> bool:
        """Whether the default rates read the data's spread (when ``lr`` is not given): a short
        run's boost does, and in a long run the rule of ``crowded`` dictionaries (default_lr,
        default_w_dec_lr_scale)."""
        return self.lr is None and (self.steps < LONG_RUN_STEPS or crowded)

    def betas(self) -> tuple[float, float]:
        """Adam's (β1, β2): ``adam_betas``, or the default for this run length (see default_betas)."""
        if self.adam_betas is not None:
            return self.adam_betas
        return default_betas(self.steps)

    def warmup_steps(self) -> int:
        """Linear warm-up length: ``lr_warmup_steps``, or 5 % of the steps (at most 100)."""
        if self.lr_warmup_steps is not None:
            return int(self.lr_warmup_steps)
        return default_warmup(self.steps)

    def tail_fraction(self, long_run: float = 0.0) -> float:
        """The last fraction of the steps whose weights the saved dictionary averages
        (saekit.training.average): ``tail_average``, or by default LONG_RUN_TAIL times the
        dictionary's weight of the long-run rule (``long_run``, 0-1; DictionaryConfig.long_run_weight):
        the mean cancels the jitter of a decoder stepping at up to 120x the run's rate. Elsewhere
        (short runs, an LM's residual stream, the penalty kinds, crosscoders, a given ``lr``) the
        last step's weights are kept."""
        if self.tail_average is not None:
            return float(self.tail_average)
        return round(LONG_RUN_TAIL * long_run, 4)

    def normalizes(self, kind: str) -> bool:
        """Whether the trainer scales activations to E||x||² = d_in for a dictionary of ``kind``:
        ``normalize``, or by default for every kind. Penalties (relu's λ·L1, jumprelu's λ·L0) were
        set for that scale, and top-k kinds, which have none, still depend on it through Adam: at
        E||x||² = d/10⁴ the gradients sink below Adam's ε and top-k recovered fewer planted
        features (MMCS 0.936 vs 0.969, batchtopk 0.704 vs 0.859; docs/training.md). A crosscoder
        (``kind`` "crosscoder", the trained class's) keeps its sources' raw scales by default, as
        before: one scale per source would equalise the models it compares."""
        if self.normalize is None:
            return kind != "crosscoder"
        return bool(self.normalize)


# ---------------------------------------------------------------- default schedule (issue 21)
# Measured in benchmarks/defaults_lr_cells.py and benchmarks/defaults_recovery.py (results in
# benchmarks/RESULTS.md, rule in docs/training.md): Adam on inputs normalised to E||x||² = d_in.
LONG_RUN_STEPS = 2048  # a shorter run travels (lr·steps) as far as this many steps at Gao's rate; Gao's betas from here
# the boost's floor: twice Gao's rate in long runs (session 10: on issue 21's synthetic row at 10M tokens
# FVU 0.0855 -> 0.080, below sparsify's 0.0802; the LM row, spread 0.19, keeps Gao's rate)
LONG_RUN_BOOST = 2.0
SHORT_RUN_EXPONENT = 1.0  # below it lr·steps stays what a LONG_RUN_STEPS run gets (√ until session 6:
# on the planted worlds the √ rule's rate was 3-4x too low to find the features in a short run)
MAX_DEFAULT_LR = 1e-2
SHORT_RUN_BETAS = (0.5, 0.95)  # Adam's betas below LONG_RUN_STEPS steps (session 7, default_betas)
# Dead latents (session 7): AuxK's weight, and the dead window of top-k kinds in average firings
# (session 10: 320 firings left 8-10 % of issue 21's synthetic row's latents never firing on held-out
# rows, 96 firings 0.7-1 % (three seeds; AuxK 1: 0.5-1 %); docs/training.md, "Dead latents")
DEFAULT_AUX_COEF = 1 / 2  # Gao et al.'s 1/32 left 5 % of a tiny LM's latents dead in a short run
DEAD_WINDOW_FIRINGS = 96  # 12k tokens for 4096 latents at k = 32 (a fifth of the run was 200k)
DEAD_WINDOW_BATCHES = 3  # a window of one or two batches lost more latents (5.5 % against 2 %)
# ... or 1 % of the run, at most 320 firings (session 7's window): at 10M tokens and twice Gao's rate
# the 12k window let 20 % of that row's latents die two thirds into the run, 41k kept 99.4 % alive
DEAD_WINDOW_RUN_FRACTION = 0.01
DEAD_WINDOW_MAX_FIRINGS = 320
# W_dec's multiple in crowded dictionaries (session 11, default_w_dec_lr_scale): on issue 21's synthetic row
# (4096 latents, k 32, 128-d) 3x found fewer features than SAELens (MMCS 0.958 vs 0.964), 12x lost 4 % of the
# latents, 16-24x gave 0.970-0.974 with 1.1-1.7 % dead; rows only wide (2048 latents at 64-d with k 3 or 8,
# 4096 at 128-d with k 8) or only busy (1024 latents, k 32, 128-d) lost MMCS or FVU at 10-19x
# (benchmarks/RESULTS.md, "Session 11: the decoder's rate in crowded dictionaries")
WIDE_LATENTS_PER_DIM = 16
BUSY_K_PER_DIM = 1 / 8
MAX_W_DEC_LR_SCALE = 20.0
# ... and in long runs (LONG_RUN_STEPS or more) a slower run with a much faster decoder (session 13): at 20x
# every lever that found more of that row's features at 10M tokens lost reconstruction (session 12's front);
# the base rate at 0.75x with W_dec at 120x that (4.5x W_dec's absolute rate) found as many as SAELens (a tie
# across seeds) at a lower FVU (benchmarks/RESULTS.md, "Session 13: long runs of crowded dictionaries")
LONG_RUN_W_DEC_LR_SCALE = 120.0
LONG_RUN_CROWDED_LR_SCALE = 0.75
# both only on spread-out data, in full from spread 1 down to none at LONG_RUN_SPREAD_FLOOR: on issue 21's LM
# row (spread 0.19) at 10M tokens the rule in full cost 27 % FVU, at 0.19 of it (0.95x, 39x) 12-20 % with more dead
LONG_RUN_SPREAD_FLOOR = 0.5
# The weights the rule's dictionaries save: their mean over this last fraction of the steps, times the rule's
# weight (TrainConfig.tail_fraction; session 18): the decoder at 120x jitters around its directions, and the mean
# over the last 20 % (the rate's decay) lifted MMCS by 0.016 and lowered FVU by 1.3 % on issue 21's synthetic row
# at 10M tokens (four seeds, the same at each); where the rule does not apply it cost FVU (LM row at 10M +0.9 %,
# at 1M +6.6 %; the synthetic row at 1M left 2.9 % of the latents dead against 1 %)
LONG_RUN_TAIL = 0.2


def crowding_ramp(n_latents: int, d_out: int, k: int) -> float:
    """0-1: how crowded a top-k dictionary is, both wide (many latents per decoder dimension) and
    busy (k a large fraction of it): with c = min(n_latents / (WIDE_LATENTS_PER_DIM·d),
    k / (BUSY_K_PER_DIM·d)), 0 at c ≤ 1 rising linearly to 1 at c ≥ 2 (issue 21's row: 4096
    latents, k 32, 128-d, c = 2)."""
    crowding = min(n_latents / (WIDE_LATENTS_PER_DIM * d_out), k / (BUSY_K_PER_DIM * d_out))
    return min(1.0, max(0.0, crowding - 1))


def long_run_weight(crowding: float, spread: float) -> float:
    """0-1: how far a long run's crowded-dictionary rule applies (default_lr, default_w_dec_lr_scale):
    the crowding ramp (crowding_ramp) times the spread's, 0 at LONG_RUN_SPREAD_FLOOR or less, 1 at 1;
    to 0.01, so that a spread measured again on resume (float noise) gives the same rates."""
    return round(crowding * min(1.0, max(0.0, (spread - LONG_RUN_SPREAD_FLOOR) / (1 - LONG_RUN_SPREAD_FLOOR))), 2)


def default_w_dec_lr_scale(kind_scale: float, n_latents: int, d_out: int, k: int | None, long_run: float = 0.0) -> float:
    """W_dec's default rate multiple: the kind's (saekit.kinds ``decoder_rates``: 3 for topk,
    batchtopk, matryoshka), raised in crowded dictionaries (crowding_ramp) linearly to
    MAX_W_DEC_LR_SCALE, and in a long run on spread-out data further toward LONG_RUN_W_DEC_LR_SCALE
    by the rule's weight ``long_run`` (0-1, long_run_weight; default_lr lowers the base rate of the
    same dictionaries as much). Kinds whose multiple is 1 keep it."""
    if kind_scale <= 1.0 or k is None:
        return kind_scale
    scale = kind_scale + (MAX_W_DEC_LR_SCALE - kind_scale) * crowding_ramp(n_latents, d_out, k)
    return round(scale + (LONG_RUN_W_DEC_LR_SCALE - MAX_W_DEC_LR_SCALE) * long_run, 2)


def default_lr(n_latents: int, batch_size: int, steps: int, spread: float = 1.0, long_run: float = 0.0) -> float:
    """The default base learning rate for a dictionary of ``n_latents`` latents trained ``steps``
    steps of ``batch_size`` rows: Gao et al. (2024)'s 2e-4·√(16384/n) times a boost, at most
    MAX_DEFAULT_LR. The boost is LONG_RUN_STEPS/steps for a short run, so that it travels as far
    (lr × steps) as a LONG_RUN_STEPS-step run, and at least LONG_RUN_BOOST (twice Gao's rate from
    LONG_RUN_STEPS / LONG_RUN_BOOST steps on). The batch size enters through the step count.
    ``spread`` (0-1, saekit.training.spread.spread_factor of the activations; the trainer measures
    it) scales a short run's boost, never below Gao's rate: data held by a few directions, like a
    tiny LM's residual stream, loses its latents at the full boost. In a long run the boost is
    LONG_RUN_BOOST whatever the spread, and a crowded dictionary's on spread-out data falls toward
    LONG_RUN_CROWDED_LR_SCALE times that by the rule's weight ``long_run`` (0-1, long_run_weight),
    its decoder stepping faster instead (default_w_dec_lr_scale)."""
    width = 2e-4 / (n_latents / 16384) ** 0.5
    if steps >= LONG_RUN_STEPS:
        boost = LONG_RUN_BOOST * (1 - (1 - LONG_RUN_CROWDED_LR_SCALE) * long_run)
    else:
        boost = max(LONG_RUN_BOOST, (LONG_RUN_STEPS / max(1, steps)) ** SHORT_RUN_EXPONENT) * spread
    return min(MAX_DEFAULT_LR, width * max(1.0, boost))


def default_betas(steps: int) -> tuple[float, float]:
    """Adam's default (β1, β2): Gao et al.'s (0.9, 0.999) for runs of LONG_RUN_STEPS steps or more,
    SHORT_RUN_BETAS for shorter ones. β2 = 0.999 averages the squared gradients over ~1000 steps,
    longer than a short run, so its steps shrink as the loss falls; on issue 21's synthetic row
    (244 steps) (0.5, 0.95) raised MMCS from 0.949 to 0.976 and lowered FVU from 0.173 to 0.161
    at the same rate (benchmarks/RESULTS.md, "Session 7: Adam's betas in short runs")."""
    return SHORT_RUN_BETAS if steps < LONG_RUN_STEPS else (0.9, 0.999)


def default_warmup(steps: int) -> int:
    """The default warm-up: 5 % of the steps, at most 100 (a short run must not spend half of
    its steps warming up)."""
    return min(100, steps // 20)
