"""One shared training loop for every model variant: same data order, same seed.

The regulariser is the only thing that differs between variants (and the activation
function for `solu`; `random` is the initialised model, untrained).
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch

from saekit.config import ModelConfig
from saekit.device import resolve_device
from saekit.errors import ConfigError
from saekit.models.build import build_model, initialise, tl_config_dict
from saekit.models.handle import ModelHandle
from saekit.models.regularisers import MagnitudePruner, sheet_shape, topo_loss, weight_l1
from saekit.models.store import existing_model_info, load_model, save_model_folder
from saekit.progress import token_bar
from saekit.runfolder import claim, prepare_output, release


def corpus_tokens(cfg: ModelConfig, tokenizer=None) -> tuple[object, torch.Tensor, torch.Tensor]:
    """(tokenizer, train tokens, validation tokens) of the built-in corpus, packed to n_ctx."""
    from saekit.data import default_tokenizer, load_corpus, pack_tokens

    tokenizer = tokenizer or default_tokenizer(cfg.vocab_size)
    if len(tokenizer) > cfg.vocab_size:
        raise ConfigError(
            f"vocab_size ({cfg.vocab_size}) is smaller than the tokenizer's vocabulary ({len(tokenizer)})."
        )
    train = pack_tokens(load_corpus("train"), tokenizer, cfg.n_ctx)
    val = pack_tokens(load_corpus("validation"), tokenizer, cfg.n_ctx, max_rows=max(1, cfg.eval_tokens // cfg.n_ctx))
    return tokenizer, train, val


def dataset_tokens(
    cfg: ModelConfig, dataset: str | None, text_column: str = "text", tokenizer_name: str | None = None
) -> tuple[object, tuple[torch.Tensor, torch.Tensor]]:
    """(tokenizer, (train, validation) tokens) from a HF dataset or local files (the last
    5 % of packed rows, at least one, are validation), or from the built-in corpus's own
    train/validation split when ``dataset`` is None."""
    from saekit.data import default_tokenizer, iter_texts, load_text_dataset, load_tokenizer, pack_tokens

    if tokenizer_name:
        tokenizer = load_tokenizer(tokenizer_name)
    elif dataset and dataset.startswith("planted:"):  # a planted language brings its own vocabulary
        from saekit.data.planted import planted_language

        tokenizer = planted_language(dataset).tokenizer
    else:
        tokenizer = default_tokenizer(cfg.vocab_size)
    if len(tokenizer) > cfg.vocab_size:
        raise ConfigError(
            f"vocab_size ({cfg.vocab_size}) is smaller than the tokenizer's vocabulary ({len(tokenizer)})."
        )
    if not dataset:  # the built-in corpus keeps its fixed split: no validation play reaches training
        _, train, val = corpus_tokens(cfg, tokenizer)
        return tokenizer, (train, val)
    tokens = pack_tokens(iter_texts(load_text_dataset(dataset, text_column=text_column), text_column), tokenizer, cfg.n_ctx)
    if len(tokens) < 2:
        raise ConfigError(f"dataset {dataset} packs into {len(tokens)} context(s) of {cfg.n_ctx}; it needs at least 2.")
    n_val = max(1, len(tokens) // 20)
    return tokenizer, (tokens[:-n_val], tokens[-n_val:])


def _lr_at(step: int, cfg: ModelConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def evaluate_lm_loss(model, tokens: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy over `tokens` [n, n_ctx]."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        batch = tokens[i : i + batch_size].to(device)
        loss = model(batch, return_type="loss")
        total += float(loss) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def mean_mlp_activation_l1(model, tokens: torch.Tensor, batch_size: int = 32) -> float:
    """Mean |blocks.*.mlp.hook_post| over `tokens` (what `act_l1` penalises)."""
    device = next(model.parameters()).device
    sums: list[torch.Tensor] = []

    def record(act, hook):
        sums.append(act.abs().mean())

    with torch.no_grad():
        for i in range(0, len(tokens), batch_size):
            model.run_with_hooks(
                tokens[i : i + batch_size].to(device),
                return_type=None,
                fwd_hooks=[(lambda name: name.endswith("mlp.hook_post"), record)],
            )
    return float(torch.stack(sums).mean())


def _regulariser_loss(model, cfg: ModelConfig, tokens: torch.Tensor, sheet) -> tuple[torch.Tensor, torch.Tensor]:
    """(LM loss, regulariser term already multiplied by its coefficient)."""
    if cfg.variant == "act_l1":
        acts: list[torch.Tensor] = []
        lm = model.run_with_hooks(
            tokens,
            return_type="loss",
            fwd_hooks=[(lambda name: name.endswith("mlp.hook_post"), lambda a, hook: acts.append(a.abs().mean()))],
        )
        return lm, cfg.coef * torch.stack(acts).sum()
    lm = model(tokens, return_type="loss")
    if cfg.variant == "l1_weights":
        return lm, cfg.coef * weight_l1(model)
    if cfg.variant == "topographic":
        return lm, cfg.coef * topo_loss(model, sheet, cfg.topo_downsample)
    return lm, torch.zeros((), device=lm.device)


def train_model(
    cfg: ModelConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    tokenizer=None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool | None = None,
    dataset: str | None = None,
) -> ModelHandle:
    """Train one model variant on the built-in corpus (or `data` = (train, val) tokens) and save it.

    `dataset` names where `data` came from (kept in the model's info: a comparison of models of a
    planted language reads fresh rows of it, with their labels).

    An `out_dir` that already holds this exact model is reused; one that holds a different
    model raises unless overwrite=True.
    """
    out = Path(out_dir)
    existing = existing_model_info(out) if not overwrite else None
    if existing is not None:
        if _same_config(existing.get("config"), cfg) and existing.get("dataset") == dataset:
            handle = load_model(out, device=cfg.device)
            handle.info["reused"] = True  # the command says "reused", not "saved"
            return handle
        raise ConfigError(
            f"output folder {out} already holds a different model (variant {existing.get('variant')!r}); "
            "pass --overwrite to replace it or choose another --out."
        )
    lock = claim(out)  # one writer per model folder
    if overwrite:  # deletes only a model folder's own files; refuses a folder holding others
        prepare_output(out, "model", overwrite=True)
    device = resolve_device(cfg.device)
    if data is None:
        tokenizer, train_tokens, val_tokens = corpus_tokens(cfg, tokenizer)
    else:
        train_tokens, val_tokens = data
        if tokenizer is None:
            raise ConfigError("train_model got token data without its tokenizer; pass tokenizer= as well.")

    tl_args = tl_config_dict(cfg)
    model = initialise(build_model(tl_args), cfg).to(device, print_details=False)
    sheet = cfg.topo_sheet or sheet_shape(cfg.d_mlp)
    pruner = None
    if cfg.variant == "pruned":
        pruner = MagnitudePruner(
            model, cfg.coef, int(cfg.prune_start * cfg.steps), int(cfg.prune_end * cfg.steps), cfg.prune_every
        )
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    train_losses: list[float] = []
    if cfg.variant != "random":
        train_losses = _train_loop(model, cfg, train_tokens, sheet, pruner, log_path, device, progress)

    val_loss = evaluate_lm_loss(model, val_tokens)
    info = {
        "name": f"saekit-tiny-{cfg.variant}",
        "variant": cfg.variant,
        "coef": cfg.coef,
        "group": cfg.group,
        "seed": cfg.seed,
        "dataset": dataset,
        "config": cfg.to_dict(),
        "train_loss": sum(train_losses[-20:]) / len(train_losses[-20:]) if train_losses else None,
        "val_loss": val_loss,
        "train_tokens_seen": len(train_losses) * cfg.batch_size * cfg.n_ctx,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if pruner is not None:
        info["mlp_zero_fraction"] = pruner.zero_fraction()
    handle = ModelHandle(model.eval(), tokenizer, "transformer_lens", info["name"], cfg.variant, out, info)
    save_model_folder(handle, tl_args, info, pruner.masks if pruner else None)
    release(lock)
    return handle


def _same_config(saved: dict | None, cfg: ModelConfig) -> bool:
    """Whether a saved saekit_model.json config is cfg; fields added since it was written take their
    defaults (a folder saved before `positional_embedding` existed is a "standard" model)."""
    try:
        return saved is not None and ModelConfig.from_dict(saved).to_dict() == cfg.to_dict()
    except ConfigError:
        return False


def _train_loop(model, cfg: ModelConfig, train_tokens, sheet, pruner, log_path: Path, device, progress) -> list[float]:
    # Same generator seed for every variant: identical batches in identical order.
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    losses: list[float] = []
    tokens_per_step = cfg.batch_size * cfg.n_ctx
    bar = token_bar(
        cfg.steps * tokens_per_step, f"train {cfg.variant}", disable=None if progress is None else not progress
    )
    start = time.perf_counter()
    model.train()
    with open(log_path, "w") as log:
        for step in range(cfg.steps):
            rows = torch.randint(0, len(train_tokens), (cfg.batch_size,), generator=gen)
            batch = train_tokens[rows].to(device)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            lm, reg = _regulariser_loss(model, cfg, batch, sheet)
            loss = lm + reg
            if not torch.isfinite(loss):
                raise ConfigError(f"model training diverged at step {step} (loss {float(loss)}); lower --lr or --coef.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if pruner is not None:
                pruner.update(step)
            losses.append(float(lm.detach()))
            bar.update(tokens_per_step)
            if step % 10 == 0 or step == cfg.steps - 1:
                elapsed = time.perf_counter() - start
                record = {
                    "step": step,
                    "lm_loss": float(lm.detach()),
                    "reg": float(reg.detach()),
                    "lr": _lr_at(step, cfg),
                    "tokens_per_s": (step + 1) * tokens_per_step / elapsed,
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{float(lm.detach()):.3f}")
    bar.close()
    model.eval()
    return losses


def train_variants(
    variants: list[str],
    out_root: str | Path,
    base: ModelConfig | None = None,
    coefs: dict[str, float] | None = None,
    overwrite: bool = False,
    dataset: str | None = None,
) -> dict[str, ModelHandle]:
    """Train several variants under one loop, sharing tokenizer, data and seed (the built-in
    corpus, or ``dataset`` such as ``planted:small``)."""
    base = base or ModelConfig()
    coefs = coefs or {}
    if dataset:
        tokenizer, (train_tokens, val_tokens) = dataset_tokens(base, dataset)
    else:
        tokenizer, train_tokens, val_tokens = corpus_tokens(base)
    handles = {}
    for variant in variants:
        cfg = base.replace(variant=variant, coef=coefs.get(variant), act_fn="gelu" if variant != "solu" else "solu_ln")
        data = (train_tokens, val_tokens)
        handles[variant] = train_model(cfg, Path(out_root) / variant, overwrite, tokenizer, data, dataset=dataset)
    return handles
