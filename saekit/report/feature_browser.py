"""``build_browser``: a static feature browser for a dictionary (and the dictionaries it is compared with).

    from saekit.report.feature_browser import build_browser
    build_browser("runs/baseline/dict", "runs/baseline/model", "browser/", tokens=200_000,
                  compare=["runs/act_l1/dict"], compare_models=["runs/act_l1/model"])

One site holds every dictionary given (the first is the main one); each latent page links its
nearest latents by decoder cosine and its best match (highest decoder cosine) in every other
dictionary. Open ``browser/index.html`` from disk; nothing is fetched from the network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saekit.errors import ConfigError
from saekit.report import feature_data as fd
from saekit.report.feature_site import INDEX_CHUNK, LATENT_CHUNK, SiteWriter, check_output


def _tokens(handle: Any, n_tokens: int, dataset: str | None, split: str, text_column: str, n_ctx: int | None):
    from saekit.data import iter_texts, load_corpus, load_text_dataset, pack_tokens

    if n_ctx is None:
        cfg = getattr(handle.model, "cfg", None)
        n_ctx = min(int(getattr(cfg, "n_ctx", 128)), 128) if cfg is not None else 128
    docs = iter_texts(load_text_dataset(dataset, split, text_column), text_column) if dataset else load_corpus(split)
    rows = math.ceil(n_tokens / max(n_ctx - 1, 1))
    return pack_tokens(docs, handle.tokenizer, n_ctx, bos=True, max_rows=rows)


def _load(dictionary: str, model: str, device: str, loaded: dict) -> tuple[Any, Any, str]:
    from saekit.evaluation.splice import split_hooks
    from saekit.io import load
    from saekit.models import load_model

    sae = load(dictionary, device=device).eval()
    if model not in loaded:
        loaded[model] = load_model(model, device=device)
    handle = loaded[model]
    hook, _ = split_hooks(sae, None, None)
    handle.check_hookpoint(hook)
    return sae, handle, hook


def _names(paths: Sequence[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = Path(p).name or str(p)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "dict"
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}_{k}", k + 1
        names.append(name)
    return names


def build_browser(
    dictionary: str,
    model: str,
    out: str | Path,
    *,
    tokens: int = 200_000,
    dataset: str | None = None,
    split: str = "train",
    text_column: str = "text",
    compare: Sequence[str] = (),
    compare_models: Sequence[str] | None = None,
    n_ctx: int | None = None,
    batch_rows: int = 8,
    device: str = "cpu",
    overwrite: bool = False,
    seed: int = 0,
    names: Sequence[str] | None = None,
    neuronpedia_out: str | Path | None = None,
) -> Path:
    """Build the browser in ``out`` (a new or empty folder, or an earlier browser with overwrite=True).

    names: the dictionaries' names in the site (and in its ``#dict=NAME`` links); default: their folder names.
    neuronpedia_out: also write the main dictionary's latents there in SAEDashboard's Neuronpedia batch
      layout (``saekit.report.neuronpedia``)."""
    out = check_output(out, overwrite)
    if neuronpedia_out is not None:
        from saekit.report.neuronpedia import check_neuronpedia_output

        neuronpedia_out = check_neuronpedia_output(neuronpedia_out, overwrite)
    if tokens <= 0:
        raise ConfigError(f"tokens must be a positive number of tokens, got {tokens}.")
    compare_models = list(compare_models or [])
    if compare_models and len(compare_models) not in (1, len(compare)):
        raise ConfigError(f"give one --compare-model per --compare dictionary ({len(compare)}), or one for all.")
    paths = [str(dictionary), *map(str, compare)]
    models = [str(model)] + [
        compare_models[min(i, len(compare_models) - 1)] if compare_models else str(model) for i in range(len(compare))
    ]
    if names is not None and len(names) != len(paths):
        raise ConfigError(f"give one name per dictionary ({len(paths)}), got {len(names)}.")
    names = _names(list(names) if names is not None else paths)
    t0 = time.perf_counter()
    loaded: dict = {}
    specs = [_load(p, m, device, loaded) for p, m in zip(paths, models)]  # every bad input before any work
    d_in = {sae.W_dec.shape[1] for sae, _, _ in specs}
    if len(d_in) > 1:
        raise ConfigError(f"compared dictionaries must write the same width to be matched, got widths {sorted(d_in)}.")
    token_rows: dict = {}
    datas = []
    for name, (sae, handle, hook), m in zip(names, specs, models):
        if m not in token_rows:
            token_rows[m] = _tokens(handle, tokens, dataset, split, text_column, n_ctx)
        data = fd.collect(name, sae, handle, hook, token_rows[m], batch_rows=batch_rows, seed=seed)
        fd.explain(data)
        fd.add_abstractness(data)
        fd.add_logits(data)
        data.neighbours = fd.nearest(sae.W_dec, sae.W_dec, 5, exclude_self=True)
        datas.append(data)
    for a in datas:
        for b in datas:
            if a is not b:
                v, i = fd.nearest(a.sae.W_dec, b.sae.W_dec, 1, exclude_self=False)
                a.matches[b.name] = (v[:, 0], i[:, 0])
    site = SiteWriter(out)
    try:
        _write_site(site, datas, specs, models)
        result = site.finish({"dictionaries": names, "paths": paths, "models": models, "tokens": tokens})
    except BaseException:
        site.abort()
        raise
    if neuronpedia_out is not None:
        _export_neuronpedia(neuronpedia_out, datas[0], specs[0][2], models[0], dataset, split)
    n_lat = sum(d.stats.n_latents for d in datas)
    print(
        f"feature browser: {len(datas)} dictionaries, {n_lat} latents on {datas[0].stats.n_tokens} tokens "
        f"in {time.perf_counter() - t0:.1f} s -> {result / 'index.html'}"
    )
    return result


def _export_neuronpedia(out: Path, data: Any, hook: str, model: str, dataset: str | None, split: str) -> None:
    from saekit.report.neuronpedia import write_neuronpedia

    cache: dict[int, str] = {}

    def decode(t: int) -> str:
        if t not in cache:
            cache[t] = data.tokenizer.decode([t])
        return cache[t]

    source = dataset or f"saekit built-in corpus ({split})"
    model_id = Path(model).name or str(model)
    files = write_neuronpedia(out, data, lambda i: fd.latent_details(data, i), decode, hook, model_id, data.name, source)
    print(f"neuronpedia batches: {len(files)} files -> {out}")


def _write_site(site: SiteWriter, datas: list, specs: list, models: list[str]) -> None:
    dicts = []
    for data, (sae, _, hook), m in zip(datas, specs, models):
        decode_cache: dict[int, str] = {}

        def decode(t: int, tok=data.tokenizer, cache=decode_cache) -> str:
            if t not in cache:
                cache[t] = tok.decode([t])
            return cache[t]

        rows = fd.index_rows(data, decode)
        n = len(rows)
        n_index = math.ceil(n / INDEX_CHUNK)
        n_details = math.ceil(n / LATENT_CHUNK)
        base = f"data/{data.name}"
        for c in range(n_index):
            site.chunk(f"{base}/index_{c}.js", f"{data.name}/index/{c}", rows[c * INDEX_CHUNK : (c + 1) * INDEX_CHUNK])
        for c in range(n_details):
            lats = range(c * LATENT_CHUNK, min(n, (c + 1) * LATENT_CHUNK))
            site.chunk(f"{base}/latents_{c}.js", f"{data.name}/latents/{c}", [fd.latent_details(data, i) for i in lats])
        vocab = {str(t): decode(t) for t in sorted(fd.used_tokens(data))}
        site.chunk(f"{base}/vocab.js", f"{data.name}/vocab", vocab)
        meta = {
            "name": data.name,
            "hook": hook,
            "model": m,
            "n_latents": n,
            "n_tokens": data.stats.n_tokens,
            "columns": fd.INDEX_COLUMNS,
            "index_chunks": n_index,
            "index_chunk": INDEX_CHUNK,
            "latent_chunk": LATENT_CHUNK,
            "has_logits": bool(data.logits),
            "has_abstractness": data.abstractness is not None,
            "kind": getattr(sae, "kind", ""),
        }
        site.chunk(f"{base}/meta.js", f"{data.name}/meta", meta)
        dicts.append({"name": data.name, "hook": hook, "n_latents": n})
    site.assets({"dictionaries": dicts})
