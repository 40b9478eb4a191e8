"""A crosscoder across model variants, end to end: the library function behind `saekit crosscode`.

``run_crosscoder(model_dirs, hookpoint, out, ..., seeds=[0, 1, 2])`` streams the same training
tokens through every model, trains one crosscoder per seed on the stacked activations
(``saekit.train`` with a dict source), analyses each on the same held-out tokens (decoder-norm
sharing, latent scaling, per-source FVU / L0 / dead fraction, top contexts of exclusive latents)
and writes::

    out/crosscoder/        the crosscoder folder (saekit.load reads it), checkpoint, metrics.jsonl;
                           with several seeds one folder per seed, out/crosscoder_seed{S}/
    out/results.json       the first seed's per-latent analysis, every seed's counts and metrics,
                           and their mean with a 95 % t interval over seeds (``over_seeds``)
    out/report.html        relative-norm histogram, counts per class with intervals, latent-scaling
                           scatter, per-source metrics, contexts of exclusive latents

A comparison pipeline can call it with the variant folders it already has.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_write_json
from saekit.pipeline.crosscoder_analysis import HeldOut, analyse_held_out, held_out_from_grids, over_seeds, seed_record


def run_crosscoder(
    model_dirs: list[str | Path],
    hookpoint: str,
    out: str | Path,
    *,
    names: list[str] | None = None,
    kind: str = "batchtopk",
    n_latents: int = 4096,
    k: int | None = 32,
    sparsity_coef: float | None = None,
    total_tokens: int = 2_000_000,
    batch_size: int = 4096,
    lr: float | None = None,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    normalize: bool = True,
    n_ctx: int | None = None,
    eval_tokens: int = 20_000,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train and analyse one crosscoder per seed over ``model_dirs`` at ``hookpoint``; return results.json's dict.

    seeds: train one crosscoder per seed (default ``[seed]``); results.json then holds the counts per
    class and per-source metrics of every seed, and their mean with a 95 % t interval over seeds.
    """
    from saekit.models import load_model

    seeds = [int(s) for s in (seeds if seeds is not None else [seed])]
    if len(model_dirs) < 2:
        raise ConfigError(f"a crosscoder compares at least two models, got {len(model_dirs)}.")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct integers, got {seeds}.")
    handles = [load_model(str(d), device=device) for d in model_dirs]
    names = _source_names(handles, model_dirs, names)
    for h in handles:
        h.check_hookpoint(hookpoint)
    _check_tokenizers(handles, names)
    out = Path(out)
    tokens, doc_ids = _tokens(handles[0], "train", n_ctx, total_tokens)
    eval_ids, _ = _tokens(handles[0], "validation", n_ctx, eval_tokens)
    held = held_out(handles, eval_ids, hookpoint)
    cfg = DictionaryConfig(
        kind=kind, d_in=int(held.acts.shape[-1]), n_latents=n_latents, k=k if kind != "relu" else None,
        n_sources=len(names), source_names=tuple(names), hook_name=hookpoint,
        model_name=" | ".join(str(d) for d in model_dirs),
        **({"sparsity_coef": sparsity_coef} if sparsity_coef is not None else {}),
    )
    tcfg = TrainConfig(batch_size=batch_size, total_tokens=total_tokens, lr=lr, normalize=normalize, device=device)
    analyses = {}
    for s in seeds:
        folder = out / crosscoder_folder(s, seeds)
        cc = _train_streamed(cfg, handles, names, tokens, doc_ids, hookpoint, tcfg.replace(seed=s, out_dir=str(folder)), progress)
        analyses[s] = analyse_held_out(cc, held)
    results = combine_seeds(analyses)
    atomic_write_json(out / "results.json", results)
    from saekit.report.crosscoder import write_crosscoder_report

    write_crosscoder_report(results, out)
    return results


def crosscoder_folder(seed: int, seeds: Sequence[int]) -> str:
    """Where a seed's crosscoder goes inside a run: ``crosscoder`` for one seed, ``crosscoder_seed{S}`` for several."""
    return "crosscoder" if len(seeds) == 1 else f"crosscoder_seed{seed}"


def combine_seeds(analyses: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """results.json: the first seed's full analysis, every seed's figures, and their intervals over seeds."""
    first = next(iter(analyses.values()))
    per_seed = {str(s): seed_record(a) for s, a in analyses.items()}
    return {**first, "seeds": list(analyses), "per_seed": per_seed, "over_seeds": over_seeds(per_seed)}


def _train_streamed(cfg, handles, names, tokens, doc_ids, hookpoint, tcfg, progress) -> Any:
    """One crosscoder trained on the models' activations streamed over the same tokens."""
    from saekit.activations import ActivationStream
    from saekit.training import train

    buffer = max(1024, min(1 << 16, tcfg.total_tokens))
    streams = {
        n: ActivationStream(h, tokens, hookpoint, doc_ids=doc_ids, seed=tcfg.seed, buffer_tokens=buffer, with_meta=True)
        for n, h in zip(names, handles)
    }
    try:
        return train(cfg, streams, tcfg, progress=progress)
    finally:
        for s in streams.values():
            s.close()


def analyse_crosscoder(
    cc: Any, handles: list[Any], names: list[str], hookpoint: str, *, n_ctx: int | None = None, eval_tokens: int = 20_000
) -> dict[str, Any]:
    """Sharing, latent scaling, per-source metrics and example contexts of ``cc`` on held-out tokens."""
    tokens, _ = _tokens(handles[0], "validation", n_ctx, eval_tokens)
    return analyse_held_out(cc, held_out(handles, tokens, hookpoint))


def held_out(handles: list[Any], tokens: torch.Tensor, hookpoint: str) -> HeldOut:
    """Every model's activations at ``hookpoint`` over ``tokens`` (BOS dropped), as HeldOut rows."""
    acts, _, where = held_out_activations(handles, tokens, hookpoint)
    return HeldOut(acts, tokens, where, handles[0].tokenizer)


@torch.no_grad()
def held_out_activations(handles: list[Any], tokens: torch.Tensor, hookpoint: str):
    """(activations [N, M, d], token ids [N], (row, position) [N, 2]) of every non-BOS token."""
    from saekit.activations import HookpointReader

    grids = []
    for h in handles:
        reader = HookpointReader(h, [hookpoint])
        parts = [reader(tokens[i : i + 8].to(reader.device))[hookpoint].float().cpu() for i in range(0, len(tokens), 8)]
        grids.append(torch.cat(parts))
    held = held_out_from_grids(grids, tokens)
    return held.acts, tokens[:, 1:].reshape(-1), held.where


def _tokens(handle: Any, split: str, n_ctx: int | None, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, doc_ids) of the built-in corpus split, packed for the model, about n_tokens long."""
    from saekit.data import load_corpus, pack_tokens_with_docs

    ctx = n_ctx or min(int(getattr(getattr(handle.model, "cfg", None), "n_ctx", 128)), 1024)
    rows = n_tokens // max(1, ctx - 1) + 2
    return pack_tokens_with_docs(load_corpus(split), handle.tokenizer, ctx, bos=True, max_rows=rows)


def _source_names(handles: list[Any], dirs: list[Any], names: list[str] | None) -> list[str]:
    if names is None:
        names = [h.variant or Path(str(d)).name for h, d in zip(handles, dirs)]
    if len(names) != len(handles) or len(set(names)) != len(names):
        raise ConfigError(f"the models need distinct names (got {names}); pass names=[...] (--names on the command line).")
    return list(names)


def _check_tokenizers(handles: list[Any], names: list[str]) -> None:
    """Every model must read the same token ids, or rows would not be the same tokens."""
    probe = "The crosscoder reads the same tokens from every model, 12345."
    ref = handles[0].tokenizer.encode(probe) if handles[0].tokenizer is not None else None
    for h, n in zip(handles[1:], names[1:]):
        got = h.tokenizer.encode(probe) if h.tokenizer is not None else None
        if _ids(got) != _ids(ref):
            raise DataError(
                f"models {names[0]!r} and {n!r} tokenize text differently; a crosscoder needs models with the same tokenizer."
            )


def _ids(enc: Any) -> Any:
    return getattr(enc, "ids", enc)
