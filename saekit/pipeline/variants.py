"""Step 1 of a comparison: the model variants, the dictionaries to train on them, one token list.

Every variant sees the same training and held-out tokens (packed with their shared tokenizer), so
activations and latents of two variants can be compared token by token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saekit.activations import default_n_ctx
from saekit.config import DictionaryConfig
from saekit.errors import ConfigError, DataError
from saekit.evaluation.splice import split_hooks


def default_dict_cfgs(d_model: int, n_layers: int, expansion: int = 4, k: int = 16) -> dict[str, DictionaryConfig]:
    """A top-k SAE on the last MLP's output and a top-k transcoder replacing that MLP."""
    layer = n_layers - 1
    n = expansion * d_model
    return {
        "sae": DictionaryConfig(kind="topk", d_in=d_model, n_latents=n, k=k, hook_name=f"blocks.{layer}.hook_mlp_out"),
        "transcoder": DictionaryConfig(
            kind="topk",
            d_in=d_model,
            n_latents=n,
            k=k,
            transcoder=True,
            hook_name=f"blocks.{layer}.ln2.hook_normalized",
            hook_name_out=f"blocks.{layer}.hook_mlp_out",
        ),
    }


def group_names(handles: list[Any]) -> list[str]:
    """The comparison group of each model: ``--group`` if it was given at training, else its variant,
    with ``@coef`` when models of that variant were trained with different coefficients."""
    coefs: dict[str, set] = {}
    for h in handles:
        coefs.setdefault(h.variant, set()).add(h.info.get("coef"))
    out = []
    for h in handles:
        if h.info.get("group"):
            out.append(str(h.info["group"]))
        elif len(coefs[h.variant]) > 1:
            out.append(f"{h.variant}@{h.info.get('coef'):g}")
        else:
            out.append(h.variant)
    return out


def load_variants(variant_dirs: list[str | Path], device: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(model name -> ModelHandle, group -> its model names), in the order given.

    A model's name is its group when the group has one model, else ``group-s<model seed>`` (its folder
    name on a clash). The models of one group are its model seeds (``saekit model train --seed S``).
    """
    from saekit.models import load_model

    if len(variant_dirs) < 1:
        raise ConfigError("run_comparison needs at least one model variant folder.")
    loaded = [load_model(d, device=device) for d in variant_dirs]
    for d, h in zip(variant_dirs, loaded):
        h.variant = h.variant or Path(d).name
    names = group_names(loaded)
    size = {g: names.count(g) for g in names}
    handles: dict[str, Any] = {}
    groups: dict[str, list[str]] = {}
    for d, h, g in zip(variant_dirs, loaded, names):
        key = g if size[g] == 1 else f"{g}-s{h.info.get('seed', (h.info.get('config') or {}).get('seed', 0))}"
        key = Path(d).name if key in handles else key
        if key in handles:
            raise ConfigError(f"two model folders are both named {key!r}; give them distinct folder names.")
        handles[key] = h
        groups.setdefault(g, []).append(key)
    first_name, first = next(iter(handles.items()))
    mcfg = getattr(first.model, "cfg", None)
    if mcfg is None or not hasattr(mcfg, "n_ctx"):
        raise ConfigError(
            f"variant {first_name!r} is not a transformer-lens model; saekit compare needs saekit model folders."
        )
    vocab = first.tokenizer.get_vocab()
    for v, h in handles.items():
        if h.tokenizer is not None and h.tokenizer.get_vocab() != vocab:
            raise DataError(f"variant {v!r} uses a different tokenizer from {first_name!r}; variants must share one.")
    return handles, groups


@dataclass
class SharedTokens:
    """Token ids [n_seq, n_ctx] every variant reads: training text and held-out text, and where they came from."""

    train: torch.Tensor
    eval: torch.Tensor
    n_ctx: int
    source: dict[str, Any] = field(default_factory=dict)  # recorded as results.json's settings.data
    # a planted language's held-out labels [n_seq, n_ctx, n_labels] and which labels are contextual
    eval_labels: torch.Tensor | None = None
    contextual: torch.Tensor | None = None
    dataset: str | None = None

    @property
    def tokens_per_seq(self) -> int:
        return self.n_ctx - 1  # BOS is left out of training and evaluation

    def describe(self) -> str:
        """One line for the log: how many contexts train and are held out, and from which text."""
        src = self.source
        where = f"{src.get('dataset') or 'the built-in corpus'} (split {src.get('split')!r}"
        where += ", validation split held out)" if src.get("held_out") == "validation" else ")"
        return f"{len(self.train)} training and {len(self.eval)} held-out contexts of {self.n_ctx} tokens from {where}"


# rows of a planted language for dictionaries: other seeds than the documents the models trained on (seed 0)
PLANTED_TRAIN_SEED, PLANTED_EVAL_SEED = 1, 12345


def _planted_tokens(dataset: str, n_train: int, n_eval_seqs: int, n_ctx: int) -> SharedTokens:
    """Fresh rows of a planted language (the held-out ones with their labels)."""
    from saekit.data.planted import planted_language

    lang = planted_language(dataset)
    train, _ = lang.rows(n_train, n_ctx, seed=PLANTED_TRAIN_SEED)
    held_out, labels = lang.rows(n_eval_seqs, n_ctx, seed=PLANTED_EVAL_SEED)
    source = {"dataset": dataset, "split": "generated", "held_out": f"{n_eval_seqs} rows of seed {PLANTED_EVAL_SEED}"}
    return SharedTokens(
        train, held_out, n_ctx, source, eval_labels=labels, contextual=lang.is_contextual, dataset=dataset
    )


def shared_tokens(
    handle: Any,
    train_tokens: int,
    n_explain_seqs: int,
    n_eval_seqs: int,
    dataset: str | None = None,
    split: str | None = None,
    text_column: str = "text",
) -> SharedTokens:
    """At least ``train_tokens`` training tokens (and ``n_explain_seqs`` rows), ``n_eval_seqs`` held-out rows.

    Without ``dataset`` and ``split``: the built-in corpus's train split trains, its validation split is
    held out. Otherwise both come from ``split`` (default ``train``) of ``dataset`` (a Hugging Face name
    or local files; the built-in corpus without one): the first packed rows train and the rows right
    after them are held out. A dataset too small for both gives its last ``min(n_eval_seqs, rows // 2)``
    rows to the held-out set and the rest to training.
    """
    from saekit.data import load_corpus, load_texts, pack_tokens

    n_ctx = default_n_ctx(handle)
    n_train = max(n_explain_seqs, math.ceil(train_tokens / (n_ctx - 1)))
    planted = dataset or (getattr(handle, "info", None) or {}).get("dataset") or ""
    if planted.startswith("planted:"):  # the models' planted language, held-out rows labelled
        return _planted_tokens(planted, n_train, n_eval_seqs, n_ctx)
    if dataset is None and split is None:
        train = pack_tokens(load_corpus("train"), handle.tokenizer, n_ctx, max_rows=n_train)
        held_out = pack_tokens(load_corpus("validation"), handle.tokenizer, n_ctx, max_rows=n_eval_seqs)
        return SharedTokens(train, held_out, n_ctx, {"dataset": None, "split": "train", "held_out": "validation"})
    split = split or "train"
    rows = pack_tokens(load_texts(dataset, split, text_column), handle.tokenizer, n_ctx, max_rows=n_train + n_eval_seqs)
    name = dataset or "the built-in corpus"
    if len(rows) < 2:
        raise DataError(
            f"{name} (split {split!r}) packs into 1 context of {n_ctx} tokens; a comparison needs at least 2."
        )
    n_held = n_eval_seqs if len(rows) == n_train + n_eval_seqs else min(n_eval_seqs, len(rows) // 2)
    source = {"dataset": dataset, "split": split, "held_out": f"the {n_held} contexts after the training contexts"}
    if dataset:
        source["text_column"] = text_column
    return SharedTokens(rows[:-n_held], rows[-n_held:], n_ctx, source)


def hooks_needed(dict_cfgs: dict[str, DictionaryConfig]) -> list[str]:
    """Every hookpoint the dictionaries read (a transcoder's input and output), in first-use order."""
    hooks: list[str] = []
    for cfg in dict_cfgs.values():
        for hk in split_hooks(cfg):
            if hk and hk not in hooks:
                hooks.append(hk)
    return hooks
