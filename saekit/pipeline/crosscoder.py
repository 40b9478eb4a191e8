"""A crosscoder across model variants, end to end: the library function behind `saekit crosscode`.

``run_crosscoder(model_dirs, hookpoint, out, ...)`` streams the same training tokens through
every model, trains one crosscoder on the stacked activations (``saekit.train`` with a dict
source), analyses it on held-out tokens (decoder-norm sharing, latent scaling, top contexts of
exclusive latents) and writes::

    out/crosscoder/        the crosscoder folder (saekit.load reads it), checkpoint, metrics.jsonl
    out/results.json       sharing counts and per-latent shares, latent scaling, examples
    out/report.html        relative-norm histogram, class counts, latent-scaling scatter, contexts

A comparison pipeline can call it with the variant folders it already has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_write_json

N_EXAMPLES = 3  # exclusive latents shown per source
N_CONTEXTS = 5  # top contexts per latent
CONTEXT_WINDOW = 8  # tokens before the active token


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
    normalize: bool = True,
    n_ctx: int | None = None,
    eval_tokens: int = 20_000,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train and analyse a crosscoder over ``model_dirs`` at ``hookpoint``; return results.json's dict."""
    from saekit.activations import ActivationStream
    from saekit.models import load_model
    from saekit.training import train

    if len(model_dirs) < 2:
        raise ConfigError(f"a crosscoder compares at least two models, got {len(model_dirs)}.")
    handles = [load_model(str(d), device=device) for d in model_dirs]
    names = _source_names(handles, model_dirs, names)
    for h in handles:
        h.check_hookpoint(hookpoint)
    _check_tokenizers(handles, names)
    out = Path(out)
    tokens, doc_ids = _tokens(handles[0], "train", n_ctx, total_tokens)
    buffer = max(1024, min(1 << 16, total_tokens))
    streams = {
        n: ActivationStream(h, tokens, hookpoint, doc_ids=doc_ids, seed=seed, buffer_tokens=buffer, with_meta=True)
        for n, h in zip(names, handles)
    }
    cfg = DictionaryConfig(
        kind=kind, d_in=next(iter(streams.values())).d_in, n_latents=n_latents, k=k if kind != "relu" else None,
        n_sources=len(names), source_names=tuple(names), hook_name=hookpoint,
        model_name=" | ".join(str(d) for d in model_dirs),
        **({"sparsity_coef": sparsity_coef} if sparsity_coef is not None else {}),
    )
    tcfg = TrainConfig(
        batch_size=batch_size, total_tokens=total_tokens, lr=lr, seed=seed, normalize=normalize,
        out_dir=str(out / "crosscoder"), device=device,
    )
    try:
        cc = train(cfg, streams, tcfg, progress=progress)
    finally:
        for s in streams.values():
            s.close()
    results = analyse_crosscoder(cc, handles, names, hookpoint, n_ctx=n_ctx, eval_tokens=eval_tokens)
    atomic_write_json(out / "results.json", results)
    from saekit.report.crosscoder import write_crosscoder_report

    write_crosscoder_report(results, out)
    return results


def analyse_crosscoder(
    cc: Any, handles: list[Any], names: list[str], hookpoint: str, *, n_ctx: int | None = None, eval_tokens: int = 20_000
) -> dict[str, Any]:
    """Sharing, latent scaling and example contexts of ``cc`` on held-out tokens of the models."""
    from saekit.evaluation.crosscoder import crosscoder_sharing, firing_density, latent_scaling

    tokens, _ = _tokens(handles[0], "validation", n_ctx, eval_tokens)
    acts, ids, where = held_out_activations(handles, tokens, hookpoint)
    cc = cc.to(acts.device) if hasattr(cc, "to") else cc
    data = acts.to(cc.W_enc.device)
    sharing = crosscoder_sharing(cc, density=firing_density(cc, data))
    scaling = latent_scaling(cc, data, sharing=sharing)
    examples = _examples(cc, data, sharing, scaling, tokens, where, handles[0].tokenizer)
    return {
        "dictionary": cc.cfg.to_dict(),
        "n_eval_tokens": int(acts.shape[0]),
        "sharing": sharing.to_dict(),
        "latent_scaling": scaling.to_dict(),
        "examples": examples,
    }


@torch.no_grad()
def held_out_activations(handles: list[Any], tokens: torch.Tensor, hookpoint: str):
    """(activations [N, M, d], token ids [N], (row, position) [N, 2]) of every non-BOS token."""
    from saekit.activations import HookpointReader

    per_model = []
    for h in handles:
        reader = HookpointReader(h, [hookpoint])
        parts = [reader(tokens[i : i + 8].to(reader.device))[hookpoint].float().cpu() for i in range(0, len(tokens), 8)]
        per_model.append(torch.cat(parts)[:, 1:])  # drop position 0 (BOS), as training does
    acts = torch.stack(per_model, dim=2)  # [rows, pos, M, d]
    rows, pos = acts.shape[:2]
    where = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(1, pos + 1), indexing="ij"), -1)
    return acts.reshape(rows * pos, *acts.shape[2:]), tokens[:, 1:].reshape(-1), where.reshape(-1, 2)


def _examples(cc, data, sharing, scaling, tokens, where, tokenizer) -> list[dict[str, Any]]:
    """Top contexts of a few exclusive latents per source (flagged ones marked)."""
    flagged = dict(zip(scaling.latents, scaling.flagged.tolist()))
    worst = {}
    for li, j in enumerate(scaling.latents):
        row = torch.nan_to_num(torch.maximum(scaling.nu_error[li], scaling.nu_recon[li]), nan=0.0)
        worst[j] = float(row.max())
    with torch.no_grad():
        z = torch.cat([cc.encode(data[i : i + 4096]).cpu() for i in range(0, data.shape[0], 4096)])
    out = []
    for name in sharing.names:
        latents = sorted(sharing.latents(name), key=lambda j: -float(z[:, j].max()))[:N_EXAMPLES]
        for j in latents:
            top = z[:, j].topk(min(N_CONTEXTS, z.shape[0]))
            contexts = [
                {"act": float(a), "text": _context(tokens, where[int(r)], tokenizer)} for a, r in zip(top.values, top.indices) if a > 0
            ]
            out.append({"latent": j, "owner": name, "flagged": bool(flagged.get(j)), "nu": worst.get(j, 0.0), "contexts": contexts})
    return out


def _context(tokens: torch.Tensor, at: torch.Tensor, tokenizer: Any) -> str:
    row, pos = int(at[0]), int(at[1])
    before = tokens[row, max(0, pos - CONTEXT_WINDOW) : pos].tolist()
    return f"{_decode(tokenizer, before)}⟦{_decode(tokenizer, [int(tokens[row, pos])])}⟧"


def _decode(tokenizer: Any, ids: list[int]) -> str:
    if tokenizer is None:
        return " ".join(map(str, ids))
    return tokenizer.decode(ids)


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
