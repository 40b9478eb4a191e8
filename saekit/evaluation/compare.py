"""The comparison pipeline behind `saekit compare` (and the end of `saekit demo`).

For each model variant (a saekit model folder): read activations once at every hookpoint the
dictionaries need (held in memory and shared by every dictionary and seed of that variant, or, with
``cache_dir``, written once to a disk cache of safetensors shards and read back shuffled), train
each dictionary config with ≥ 2 seeds, evaluate (core metrics, splice into the model, offline
auto-interpretation, opposing pairs), then compare: cross-variant matching beside the seed noise
floor and chance, cross-application, feature splitting across widths, and a synthetic ground-truth
check of the training pipeline itself. Writes ``results.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError, DataError
from saekit.evaluation.autointerp import SparseActs, autointerp, collect_acts, top_contexts
from saekit.evaluation.matching import activation_correlation, chance_level, compare_weights
from saekit.evaluation.metrics import dictionary_metrics
from saekit.evaluation.probes import feature_splitting, ground_truth_recovery, opposing_pairs, toy_sparse_data
from saekit.evaluation.splice import splice_metrics, split_hooks
from saekit.fileutil import atomic_write_json
from saekit.progress import token_bar

# small lists to keep in results.json; the per-latent arrays stay out of it
_DROP = ("density", "matched_cos", "perm_a", "perm_b", "act_corr")


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
        ),
    }


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[compare] {msg}", file=sys.stderr, flush=True)


@torch.no_grad()
def read_activations(
    handle: Any, tokens: torch.Tensor, hooks: list[str], batch_size: int = 16
) -> dict[str, torch.Tensor]:
    """Activations [n_seq, n_ctx, d] at each hook, one forward pass per batch (tokens/s bar)."""
    from saekit.activations import HookpointReader

    reader = HookpointReader(handle, hooks)
    device = reader.device
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    bar = token_bar(tokens.numel(), f"activations {getattr(handle, 'variant', '')}")
    for s in range(0, tokens.shape[0], batch_size):
        batch = tokens[s : s + batch_size]
        for h, a in reader(batch.to(device)).items():
            parts[h].append(a.float().cpu())
        bar.update(batch.numel())
    bar.close()
    return {h: torch.cat(p) for h, p in parts.items()}


def _rows(acts: torch.Tensor) -> torch.Tensor:
    """Activations [n_seq, n_ctx, d] -> [n_seq * (n_ctx - 1), d] without the BOS position."""
    return acts[:, 1:].reshape(-1, acts.shape[-1])


def _sparse_no_bos(sae: torch.nn.Module, x: torch.Tensor) -> SparseActs:
    """Codes on the whole token grid, with position 0 (BOS) cleared so it never counts as firing."""
    acts = collect_acts(sae, x.reshape(-1, x.shape[-1]))
    return acts.restrict(np.arange(acts.n_tokens) % x.shape[1] != 0)


def _clean(d: dict) -> dict:
    return {k: (_clean(v) if isinstance(v, dict) else v) for k, v in d.items() if k not in _DROP}


def _token_text(tokenizer: Any, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids] if tokenizer is not None else [str(i) for i in ids]


def _io_hooks(cfg: DictionaryConfig) -> tuple[str, str | None]:
    return split_hooks(cfg)


def build_variant_cache(handle: Any, tokens: torch.Tensor, hooks: list[str], path: Path, quiet: bool = True) -> Path:
    """Training activations of one variant at ``hooks`` written once to ``path`` (``build_cache``).

    A complete cache with the same model, tokens and hooks is checked and reused, an interrupted one
    resumed. A saekit cache built with other settings (e.g. the variant was retrained) is stale
    derived data: it is rebuilt. A non-empty folder that is not a saekit cache is never deleted.
    """
    from saekit.activations import build_cache
    from saekit.activations.writer import FORMAT, MANIFEST
    from saekit.fileutil import read_json

    try:
        return build_cache(handle, tokens, hooks, path, batch_size=16, progress=not quiet)
    except ConfigError:
        manifest = path / MANIFEST
        if not (manifest.is_file() and read_json(manifest, "cache manifest").get("format") == FORMAT):
            raise
    _log(f"{path} holds a cache built with other settings; rebuilding it", quiet)
    return build_cache(handle, tokens, hooks, path, batch_size=16, progress=not quiet, overwrite=True)


def _cache_reader(path: Path, hook: str | tuple[str, str], seed: int) -> Any:
    """A shuffled, seeded reader of a cache ``build_cache`` has just written or validated."""
    from saekit.activations import ActivationCache, read_manifest

    n = int(read_manifest(path)["n_tokens"])
    # a fill as large as the cache (up to the reader's default) shuffles across the whole epoch
    return ActivationCache(path, hook, seed=seed, buffer_tokens=2 * min(n, 1 << 17), verify=False, progress=False)


def _grid_from_cache(path: Path, hook: str, n_seqs: int, n_ctx: int) -> torch.Tensor:
    """Activations [n_seqs, n_ctx, d] of the first ``n_seqs`` sequences, put back on their token grid.

    The cache drops BOS positions; they stay zero here (``_sparse_no_bos`` clears position 0 anyway).
    Only the shards that hold those sequences are read.
    """
    from saekit.activations import read_manifest
    from saekit.activations.shards import ShardFile

    manifest = read_manifest(path)
    grid = torch.zeros(n_seqs, n_ctx, int(manifest["hookpoints"][hook]["d"]))
    for rec in manifest["shards"]:
        shard = ShardFile(path / rec["file"], int(rec["bytes"]))
        docs, pos = shard.read_all("doc_ids").long(), shard.read_all("positions").long()
        keep = docs < n_seqs
        grid[docs[keep], pos[keep]] = shard.read_all(hook)[keep].float()
        shard.close()
        if len(docs) and int(docs[-1]) >= n_seqs:
            break
    return grid


def run_comparison(
    variant_dirs: list[str | Path],
    dict_cfgs: dict[str, DictionaryConfig] | None = None,
    out_dir: str | Path = "runs/compare",
    seeds: tuple[int, ...] = (0, 1),
    train_tokens: int = 100_000,
    tcfg: TrainConfig | None = None,
    n_eval_seqs: int = 64,
    n_splice_seqs: int = 32,
    n_explain_seqs: int = 256,
    autointerp_latents: int = 256,
    n_examples: int = 4,
    split_widths: bool = True,
    synthetic: bool = True,
    device: str = "cpu",
    quiet: bool = False,
    report: bool = True,
    report_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train, evaluate and compare dictionaries across model variants; write results.json (+ report.html).

    variant_dirs: saekit model folders (``saekit model train``), e.g. baseline, act_l1, random.
    dict_cfgs: name -> DictionaryConfig with ``hook_name`` set (a transcoder's input hook; its output
      hook is the same layer's ``hook_mlp_out``); default ``default_dict_cfgs``: a top-k SAE and a
      top-k transcoder on the last layer's MLP.
    seeds: ≥ 2 seeds per dictionary, so every cross-variant figure has a seed noise floor beside it.
    report_path: where report.html goes (default ``out_dir/report.html``).
    cache_dir: if set, each variant's training activations (every hookpoint the dictionaries need)
      are written once with ``build_cache`` to ``cache_dir/<variant>`` (safetensors shards + manifest)
      and every dictionary and seed of that variant trains from shuffled, seeded ``ActivationCache``
      readers of it; a complete cache from an earlier run is checked and reused, an interrupted one
      resumed, one built with other settings (a retrained variant) rebuilt. None (default): training activations are held in memory. Evaluation uses held-out
      activations in memory either way.
    The defaults fit the demo budget (a few minutes on a 2-core CPU for d_model = 128 models).
    """
    from saekit.data import load_corpus, pack_tokens
    from saekit.models import load_model
    from saekit.training import train

    t_start = time.perf_counter()
    if len(variant_dirs) < 1:
        raise ConfigError("run_comparison needs at least one model variant folder.")
    if len(seeds) < 2:
        raise ConfigError(f"seeds must name at least two seeds (for the noise floor), got {list(seeds)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)  # this run's log starts empty
    handles = {}
    for d in variant_dirs:
        h = load_model(d, device=device)
        name = h.variant or Path(d).name
        if name in handles:
            name = Path(d).name
        handles[name] = h
    variants = list(handles)
    first = handles[variants[0]]
    mcfg = getattr(first.model, "cfg", None)
    if mcfg is None or not hasattr(mcfg, "n_ctx"):
        raise ConfigError(
            f"variant {variants[0]!r} is not a transformer-lens model; saekit compare needs saekit model folders."
        )
    n_ctx = int(mcfg.n_ctx)
    dict_cfgs = dict_cfgs or default_dict_cfgs(int(mcfg.d_model), int(mcfg.n_layers))
    tcfg = tcfg or TrainConfig(batch_size=1024, total_tokens=train_tokens, lr=2e-3, lr_warmup_steps=10, log_every=50)
    tcfg = tcfg.replace(device=device)

    # one token list for every variant, so activations and latents can be compared token by token
    tok = first.tokenizer
    n_train_seqs = max(n_explain_seqs, math.ceil(train_tokens / (n_ctx - 1)))
    train_ids = pack_tokens(load_corpus("train"), tok, n_ctx, max_rows=n_train_seqs)
    eval_ids = pack_tokens(load_corpus("validation"), tok, n_ctx, max_rows=n_eval_seqs)
    for v, h in handles.items():
        if h.tokenizer is not None and h.tokenizer.get_vocab() != tok.get_vocab():
            raise DataError(f"variant {v!r} uses a different tokenizer from {variants[0]!r}; variants must share one.")

    hooks: list[str] = []
    for cfg in dict_cfgs.values():
        for hk in _io_hooks(cfg):
            if hk and hk not in hooks:
                hooks.append(hk)

    results: dict[str, Any] = {
        "settings": {
            "variants": {v: str(h.path) for v, h in handles.items()},
            "dictionaries": {n: c.to_dict() for n, c in dict_cfgs.items()},
            "variant_order": variants,  # results.json sorts keys; the report keeps this order
            "dict_order": list(dict_cfgs),
            "seeds": list(seeds),
            "train_tokens": int(n_train_seqs * (n_ctx - 1)),
            "eval_tokens": int(eval_ids.shape[0] * (n_ctx - 1)),
            "splice_tokens": int(min(n_splice_seqs, eval_ids.shape[0]) * (n_ctx - 1)),
            "train_config": tcfg.to_dict(),
            "n_ctx": n_ctx,
        },
        "variants": {},
        "dictionaries": [],
        "examples": [],
    }
    if cache_dir is not None:
        results["settings"]["cache_dir"] = str(cache_dir)
    saes: dict[tuple[str, str, int], torch.nn.Module] = {}
    eval_acts: dict[str, dict[str, torch.Tensor]] = {}
    timing: dict[str, float] = {}

    for v in variants:
        h = handles[v]
        t0 = time.perf_counter()
        _log(f"{v}: reading activations at {', '.join(hooks)}", quiet)
        tr: dict[str, torch.Tensor] = {}
        cache: Path | None = None
        if cache_dir is None:
            tr = read_activations(h, train_ids, hooks)
        else:  # one model pass per variant; a complete cache is validated and reused
            cache = build_variant_cache(h, train_ids, hooks, Path(cache_dir) / v, quiet)
        ev = read_activations(h, eval_ids, hooks)
        eval_acts[v] = ev
        timing[f"activations/{v}"] = time.perf_counter() - t0
        results["variants"][v] = {
            "path": str(h.path),
            "info": {
                k: h.info.get(k) for k in ("variant", "coef", "val_loss", "train_loss", "mlp_zero_fraction") if h.info
            },
        }
        W_U = h.model.W_U if hasattr(h.model, "W_U") else None
        for name, cfg in dict_cfgs.items():
            in_hook, out_hook = _io_hooks(cfg)
            if cache is None:
                x_tr = _rows(tr[in_hook])
                source = (x_tr, _rows(tr[out_hook])) if out_hook else x_tr
            if cache is not None and in_hook not in tr:  # explain tokens for auto-interp, from the cache
                tr[in_hook] = _grid_from_cache(cache, in_hook, min(n_explain_seqs, train_ids.shape[0]), n_ctx)
            for seed in seeds:
                t1 = time.perf_counter()
                if cache is not None:
                    source = _cache_reader(cache, (in_hook, out_hook) if out_hook else in_hook, seed)
                n_rows = len(source) if cache is not None else x_tr.shape[0]
                _log(f"{v}/{name}/seed {seed}: training on {n_rows} tokens", quiet)
                cfg_v = cfg.replace(variant=v, model_name=h.name)
                sae = train(cfg_v, source, tcfg.replace(seed=seed), progress=not quiet)
                if cache is not None:
                    source.close()
                sae.eval()
                saes[(v, name, seed)] = sae
                sae.save(out / v / name / f"seed{seed}")
                timing[f"train/{v}/{name}/{seed}"] = time.perf_counter() - t1
                t1 = time.perf_counter()
                ev_src = (_rows(ev[in_hook]), _rows(ev[out_hook])) if out_hook else _rows(ev[in_hook])
                metrics = dictionary_metrics(sae, ev_src)
                metrics.update(splice_metrics(sae, h, eval_ids[:n_splice_seqs]))
                metrics.update(opposing_pairs(sae))
                rec: dict[str, Any] = {"variant": v, "dict": name, "seed": seed, "metrics": _clean(metrics)}
                # auto-interp: explain on training tokens, score on held-out tokens
                acts_tr = _sparse_no_bos(sae, tr[in_hook][:n_explain_seqs])
                acts_ev = _sparse_no_bos(sae, ev[in_hook])
                alive = [i for i in range(acts_tr.n_latents) if acts_tr.indptr[i + 1] > acts_tr.indptr[i]]
                rng = np.random.default_rng(seed)
                chosen = sorted(rng.choice(alive, size=min(autointerp_latents, len(alive)), replace=False).tolist())
                ai = autointerp(
                    acts_tr,
                    train_ids[:n_explain_seqs],
                    acts_ev,
                    eval_ids,
                    latents=chosen,
                    tokenizer=tok,
                    W_dec=sae.W_dec,
                    W_U=W_U,
                )
                rec["autointerp"] = {k: val for k, val in ai.items() if k != "latents"}
                rec["time_s"] = time.perf_counter() - t1
                results["dictionaries"].append(rec)
                with open(out / "metrics.jsonl", "a", encoding="utf-8") as log:  # one line per dictionary
                    log.write(json.dumps(_finite(rec), sort_keys=True) + "\n")
                if seed == seeds[0]:
                    results["examples"].extend(
                        _examples(v, name, ai["latents"], acts_ev, eval_ids, tok, n_examples, seed)
                    )
        split_name = next((n for n, c in dict_cfgs.items() if not c.transcoder and c.n_latents >= 8), None)
        if split_widths and split_name is not None:
            cfg = dict_cfgs[split_name]
            wide = saes[(v, split_name, seeds[0])]
            x_split = _rows(tr[cfg.hook_name]) if cache is None else _cache_reader(cache, cfg.hook_name, seeds[0])
            results.setdefault("feature_splitting", {})[v] = _split_probe(
                split_name, cfg, v, x_split, wide, tcfg, seeds[0], quiet
            )
            if cache is not None:
                x_split.close()
        del tr

    results["matching"] = _matching(dict_cfgs, variants, seeds, saes, eval_acts)
    results["cross_application"] = _cross_application(dict_cfgs, variants, seeds, saes, eval_acts)
    if synthetic:
        results["synthetic"] = synthetic_check(tcfg, seed=seeds[0], quiet=quiet)
    timing["total"] = time.perf_counter() - t_start
    results["timing_s"] = timing
    atomic_write_json(out / "results.json", _finite(results))
    report_file = Path(report_path) if report_path else out / "report.html"
    if report:
        from saekit.report import write_report

        write_report(results, report_file)
    _log(f"wrote {out / 'results.json'}" + (f" and {report_file}" if report else ""), quiet)
    return results


def _examples(v, name, records, acts_ev, eval_ids, tok, n, seed) -> list[dict]:
    """A few latents to show: the best-explained ones and some chosen at random."""
    scored = [r for r in records if r["n_fired"] >= 3]
    if not scored:
        return []
    best = sorted(scored, key=lambda r: -r["f1"])[: max(1, n // 2)]
    rest = [r for r in scored if r not in best]
    rng = np.random.default_rng(seed + 1)
    picks = best + (
        [rest[i] for i in rng.choice(len(rest), size=min(n - len(best), len(rest)), replace=False)] if rest else []
    )
    out = []
    for r in picks:
        ctx = top_contexts(acts_ev, eval_ids, r["latent"], n=4)
        for c in ctx:
            c["text"] = _token_text(tok, c.pop("tokens"))
        out.append(
            {
                "variant": v,
                "dict": name,
                "latent": r["latent"],
                "explanation": r["explanation"],
                "f1": r["f1"],
                "precision": r["precision"],
                "recall": r["recall"],
                "token_entropy": r["token_entropy"],
                "logit_lens": r.get("logit_lens_text", []),
                "contexts": ctx,
            }
        )
    return out


def _matching(dict_cfgs, variants, seeds, saes, eval_acts) -> dict[str, Any]:
    """Cross-variant matching beside each variant's seed noise floor and chance.

    A cross-variant pair is (variant A, first seed) vs (variant B, second seed): like the noise
    floor pair it never shares an initialisation, which would otherwise inflate the similarity of
    briefly trained dictionaries.
    """
    s0, s1 = seeds[0], seeds[1]
    out: dict[str, Any] = {}
    for name, cfg in dict_cfgs.items():
        in_hook, _ = _io_hooks(cfg)
        noise = {}
        for v in variants:
            a, b = saes[(v, name, s0)], saes[(v, name, s1)]
            x = _rows(eval_acts[v][in_hook])
            noise[v] = _pair(a, b, x, x)
        cross = []
        for i, va in enumerate(variants):
            for vb in variants[i + 1 :]:
                a, b = saes[(va, name, s0)], saes[(vb, name, s1)]
                r = _pair(a, b, _rows(eval_acts[va][in_hook]), _rows(eval_acts[vb][in_hook]))
                r.update({"a": va, "b": vb})
                cross.append(r)
        any_sae = saes[(variants[0], name, s0)]
        chance = chance_level(any_sae.W_dec.shape[0], any_sae.W_dec.shape[0], any_sae.W_dec.shape[1])
        out[name] = {"noise_floor": noise, "cross": cross, "chance": chance}
    return out


def _pair(a, b, x_a, x_b) -> dict[str, Any]:
    dec = compare_weights(a.W_dec, b.W_dec)
    enc = compare_weights(a.W_enc.T, b.W_enc.T)
    corr = activation_correlation(a, b, x_a, x_b, (np.array(dec["perm_a"]), np.array(dec["perm_b"])))
    return {"decoder": _clean(dec), "encoder": _clean(enc), **_clean(corr)}


def _cross_application(dict_cfgs, variants, seeds, saes, eval_acts) -> dict[str, Any]:
    """FVU of variant A's dictionary on variant B's activations (rows: dictionary, columns: activations)."""
    out = {}
    for name, cfg in dict_cfgs.items():
        in_hook, out_hook = _io_hooks(cfg)
        table = {}
        for va in variants:
            row = {}
            for vb in variants:
                ev = eval_acts[vb]
                src = (_rows(ev[in_hook]), _rows(ev[out_hook])) if out_hook else _rows(ev[in_hook])
                m = dictionary_metrics(saes[(va, name, seeds[0])], src)
                row[vb] = {"fvu": m["fvu"], "l0": m["l0"]}
            table[va] = row
        out[name] = table
    return out


def _split_probe(name, cfg, v, x_tr, wide, tcfg, seed, quiet) -> dict[str, Any]:
    """Train a 4x narrower SAE and group the wide SAE's latents under its latents."""
    from saekit.training import train

    narrow_cfg = cfg.replace(
        n_latents=cfg.n_latents // 4, k=min(cfg.k, cfg.n_latents // 4) if cfg.k else None, variant=v
    )
    _log(f"{v}/{name}: training a {narrow_cfg.n_latents}-latent dictionary for feature splitting", quiet)
    narrow = train(narrow_cfg, x_tr, tcfg.replace(seed=seed), progress=not quiet)
    fs = feature_splitting(narrow, wide)
    fs.pop("children")
    fs.update({"dict": name, "narrow_n_latents": narrow_cfg.n_latents, "wide_n_latents": cfg.n_latents})
    return fs


def synthetic_check(
    tcfg: TrainConfig | None = None,
    seed: int = 0,
    d: int = 32,
    n_features: int = 64,
    n_samples: int = 16384,
    epochs: int = 4,
    p_active: float = 0.03,
    quiet: bool = True,
) -> dict:
    """Train a top-k SAE on toy data made of known sparse features; report how many it recovers.

    The check that the training pipeline finds true features at all before its results on real
    models are trusted (MMCS of true features to learned decoder rows; 1.0 = all found).
    """
    from saekit.training import train

    x, feats = toy_sparse_data(n_samples, d, n_features, p_active=p_active, seed=seed)
    cfg = DictionaryConfig(kind="topk", d_in=d, n_latents=2 * n_features, k=4)
    t = (tcfg or TrainConfig(device="cpu")).replace(
        total_tokens=epochs * n_samples, batch_size=512, lr=4e-3, seed=seed, lr_warmup_steps=10
    )
    sae = train(cfg, x, t, progress=not quiet)
    out = ground_truth_recovery(sae, feats)
    out.update({"d": d, "n_features": n_features, "p_active": p_active, "n_latents": cfg.n_latents, "k": cfg.k})
    return out


def _finite(obj: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
