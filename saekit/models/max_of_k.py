"""The max-of-K toy transformer (Gross et al. 2024, "Compact proofs of model performance via
mechanistic interpretability"): 1 layer, attention only, 1 head, d_model = d_head = 32,
vocabulary 64, context K = 4, no layer norm, frozen zero biases, standard positional
embeddings; trained to output the maximum of the sequence at the last position.

Variants reuse the project's regularisers where they apply: `l1_weights` (Σ|W| of the
attention weights), `act_l1` (mean |attention output|), `random` (the initialised model).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from saekit.config import DEFAULT_COEF, MAX_OF_K_VARIANTS
from saekit.errors import ConfigError, DataError
from saekit.models.regularisers import weight_l1

RESID_HOOK = "blocks.0.hook_resid_post"  # residual stream at the end (pre-unembed: no final LN)
ATTN_OUT_HOOK = "blocks.0.hook_attn_out"


@dataclass
class MaxOfKConfig:
    vocab: int = 64
    k: int = 4
    d_model: int = 32
    variant: str = "baseline"
    coef: float | None = None
    steps: int = 3000
    batch_size: int = 512
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in MAX_OF_K_VARIANTS:
            raise ConfigError(
                f"variant {self.variant!r} does not apply to the max-of-K model; expected one of {', '.join(MAX_OF_K_VARIANTS)}."
            )
        if self.coef is None:
            self.coef = DEFAULT_COEF[self.variant]
        for name in ("vocab", "k", "d_model", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (2 if name in ("vocab", "k") else 1):
                raise ConfigError(f"max-of-K {name} must be an integer ≥ {2 if name in ('vocab', 'k') else 1}, got {value!r}.")


def build_max_of_k(cfg: MaxOfKConfig):
    """A freshly initialised (seeded) max-of-K HookedTransformer with zero, frozen biases."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tl = HookedTransformerConfig(
        n_layers=1, d_model=cfg.d_model, n_heads=1, d_head=cfg.d_model, n_ctx=cfg.k, d_vocab=cfg.vocab,
        d_vocab_out=cfg.vocab, attn_only=True, normalization_type=None, positional_embedding_type="standard",
        seed=cfg.seed, device="cpu",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HookedTransformer.*deprecated", category=DeprecationWarning)
        model = HookedTransformer(tl)
    for name, p in model.named_parameters():
        if name.split(".")[-1].startswith("b_"):
            p.requires_grad_(False)
            p.data.zero_()
    return model


def check_tokens(model, tokens: torch.Tensor) -> None:
    """Refuse inputs whose length or token ids do not fit the model (one sentence)."""
    k, vocab = model.cfg.n_ctx, model.cfg.d_vocab
    if tokens.ndim != 2 or tokens.shape[1] != k:
        raise DataError(f"max-of-K inputs must have shape [n, {k}] (K = {k} of this model), got {list(tokens.shape)}.")
    if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise DataError(f"max-of-K tokens must lie in 0..{vocab - 1} (this model's vocabulary), got {int(tokens.max())}.")


def sample_inputs(n: int, vocab: int, k: int, generator: torch.Generator, balanced: bool = True) -> torch.Tensor:
    """n random sequences [n, k]; balanced=True draws the maximum uniformly first (so rare small
    maxima are seen as often as large ones), then the rest below or at it with one copy forced."""
    if not balanced:
        return torch.randint(0, vocab, (n, k), generator=generator)
    m = torch.randint(0, vocab, (n, 1), generator=generator)
    seq = (torch.rand(n, k, generator=generator) * (m + 1).float()).long().clamp(max=m)
    where = torch.randint(0, k, (n,), generator=generator)
    seq[torch.arange(n), where] = m[:, 0]
    return seq


def all_inputs(vocab: int, k: int, batch: int = 1 << 16):
    """Every sequence of vocab^k in lexicographic order, in batches [≤ batch, k]."""
    total = vocab**k
    powers = vocab ** torch.arange(k - 1, -1, -1)
    for start in range(0, total, batch):
        idx = torch.arange(start, min(total, start + batch))
        yield (idx[:, None] // powers) % vocab


def last_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    return model(tokens, return_type="logits")[:, -1]


def _loss(model, cfg: MaxOfKConfig, tokens: torch.Tensor) -> torch.Tensor:
    target = tokens.max(dim=1).values
    if cfg.variant == "act_l1":
        acts: list[torch.Tensor] = []
        logits = model.run_with_hooks(
            tokens, return_type="logits", fwd_hooks=[(ATTN_OUT_HOOK, lambda a, hook: acts.append(a[:, -1].abs().mean()))]
        )[:, -1]
        return F.cross_entropy(logits, target) + cfg.coef * acts[0]
    loss = F.cross_entropy(last_logits(model, tokens), target)
    if cfg.variant == "l1_weights":
        loss = loss + cfg.coef * weight_l1(model)
    return loss


def train_max_of_k(cfg: MaxOfKConfig, progress: bool = False):
    """Train (or, for `random`, only initialise) the max-of-K model; returns it in eval mode.

    Half of every batch is uniform over all sequences, half has a uniformly drawn maximum."""
    from saekit.progress import token_bar

    model = build_max_of_k(cfg)
    if cfg.variant == "random":
        return model.eval()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    bar = token_bar(cfg.steps * cfg.batch_size * cfg.k, f"max-of-{cfg.k} {cfg.variant}", disable=not progress)
    half = cfg.batch_size // 2
    model.train()
    for _ in range(cfg.steps):
        tokens = torch.cat(
            [sample_inputs(half, cfg.vocab, cfg.k, gen, False), sample_inputs(cfg.batch_size - half, cfg.vocab, cfg.k, gen)]
        )
        loss = _loss(model, cfg, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(cfg.batch_size * cfg.k)
    bar.close()
    return model.eval()


@torch.no_grad()
def fast_last_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Last-position logits [n, vocab] from per-(position, token) tables, the same function as
    the model's forward pass (checked in tests) but ~100x faster for exhaustive evaluation."""
    return _logit_tables(model).logits(tokens)


class _logit_tables:
    """Attention scores S[query token, position, token] and per-(position, token) logit
    contributions, so a forward pass is two gathers, a softmax over K and a weighted sum."""

    def __init__(self, model) -> None:
        k = model.cfg.n_ctx
        emb = model.W_E[None] + model.W_pos[:k, None]  # [k, vocab, d]: residual of token t at position i
        blk = model.blocks[0].attn
        keys = torch.einsum("ivd,de->ive", emb, blk.W_K[0]) + blk.b_K[0]
        query = emb[-1] @ blk.W_Q[0] + blk.b_Q[0]  # [vocab, d_head]
        self.scores = torch.einsum("qe,ive->qiv", query, keys) / model.cfg.attn_scale
        values = torch.einsum("ivd,de,ef->ivf", emb, blk.W_V[0], blk.W_O[0]) + blk.b_V[0] @ blk.W_O[0]
        self.value_logits = values @ model.W_U  # [k, vocab, vocab_out]
        self.direct = (emb[-1] + blk.b_O) @ model.W_U + model.b_U  # [vocab, vocab_out]
        self.pos = torch.arange(k)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        query = tokens[:, -1]
        pattern = self.scores[query[:, None], self.pos, tokens].softmax(-1)  # [n, k]
        return self.direct[query] + torch.einsum("ni,nio->no", pattern, self.value_logits[self.pos, tokens])


    def logits_every_query(self, prefix: torch.Tensor) -> torch.Tensor:
        """Logits [b, vocab (query), vocab_out] of every sequence prefix + (query token): the
        value gathers happen once per prefix, not once per query."""
        n_q, head = self.scores.shape[0], self.pos[:-1]
        queries = torch.arange(n_q)
        prefix_scores = self.scores[:, head[None], prefix].permute(1, 0, 2)  # [b, q, k-1]
        own = self.scores[queries, -1, queries].expand(len(prefix), n_q)[..., None]  # [b, q, 1]
        pattern = torch.cat([prefix_scores, own], -1).softmax(-1)
        mixed = pattern[..., :-1] @ self.value_logits[head, prefix]  # [b, q, k-1] @ [b, k-1, o]
        return mixed + pattern[..., -1:] * self.value_logits[-1][None] + self.direct[None]


@torch.no_grad()
def exhaustive_accuracy(model, batch: int = 1 << 12) -> float:
    """Fraction of all vocab^K inputs whose last-position argmax is the maximum.

    For K = 4, per query token q: softmax weights relative to the query's own score make
    Z·logits = F0[a] + F1[b] + F2[c] + F3[q] (F_i[t] = e^(S[q,i,t] − S[q,3,q])·(V_i[t] + D[q])),
    an outer sum whose argmax equals the logits' (Z > 0): ~3x less work than the forward pass."""
    if model.cfg.n_ctx != 4:
        return _exhaustive_accuracy_any_k(model, batch)
    tables, vocab = _logit_tables(model), model.cfg.d_vocab
    tokens = torch.arange(vocab)
    prefix_max = torch.maximum(torch.maximum(tokens[:, None, None], tokens[None, :, None]), tokens[None, None, :]).reshape(-1, vocab)
    correct = 0
    for q in range(vocab):
        rel = tables.scores[q] - tables.scores[q, -1, q]  # [k, vocab]; the own term is e^0 = 1, so Z ≥ 1
        dtype = torch.float32 if float(rel.max()) < 80 else torch.float64  # e^80 · logits stays finite
        f = rel.to(dtype).exp()[..., None] * (tables.value_logits.to(dtype) + tables.direct[q].to(dtype))  # [k, vocab, out]
        pair = (f[0][:, None] + f[1][None] + f[3, q]).reshape(-1, 1, vocab)  # [a·b, 1, out]
        scaled = pair + f[2][None]  # [a·b, c, out]
        correct += int((scaled.argmax(-1) == prefix_max.clamp_min(q)).sum())
    return correct / vocab**4


def _exhaustive_accuracy_any_k(model, batch: int) -> float:
    tables, vocab = _logit_tables(model), model.cfg.d_vocab
    correct = 0
    queries = torch.arange(vocab)
    for prefix in all_inputs(vocab, model.cfg.n_ctx - 1, batch):
        target = torch.maximum(prefix.max(1).values[:, None], queries[None])  # [b, q]
        correct += int((tables.logits_every_query(prefix).argmax(-1) == target).sum())
    return correct / vocab**model.cfg.n_ctx


@torch.no_grad()
def site_activations(model, tokens: torch.Tensor, batch: int = 1 << 15) -> dict[str, torch.Tensor]:
    """{'resid': [n, d_model] residual at the last position (pre-unembed), 'logits': [n, vocab]}."""
    check_tokens(model, tokens)
    resid, logits = [], []
    for i in range(0, len(tokens), batch):
        out, cache = model.run_with_cache(tokens[i : i + batch], names_filter=RESID_HOOK)
        resid.append(cache[RESID_HOOK][:, -1])
        logits.append(out[:, -1])
    return {"resid": torch.cat(resid), "logits": torch.cat(logits)}


def input_labels(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ground-truth labels per input [n, K]: max, query (last token), largest non-max token
    (-1 when every token is the max), copies of the max, position of the max (first)."""
    mx = tokens.max(dim=1).values
    is_max = tokens == mx[:, None]
    below = torch.where(is_max, torch.full_like(tokens, -1), tokens)
    return {
        "max": mx,
        "query": tokens[:, -1],
        "nonmax": below.max(dim=1).values,
        "copies": is_max.sum(dim=1),
        "max_position": is_max.long().argmax(dim=1),
    }


def label_names() -> list[str]:
    return list(input_labels(torch.zeros(1, 2, dtype=torch.long)))

