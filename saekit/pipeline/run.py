"""`run_comparison`: the comparison behind `saekit compare` (and the end of `saekit demo`), as named steps.

1. variants and one shared token list (``variants``);
2. each variant's activations, in memory or through a disk cache (``activations``);
3. per variant × dictionary × seed: train, evaluate, auto-interpret, example latents (``dictionaries``);
4. matching beside the seed noise floor and chance, cross-application, feature splitting
   (``crossvariant``), and the synthetic ground-truth check (``synthetic``);
5. results.json and report.html (``results``, ``saekit.report``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError
from saekit.pipeline import crossvariant
from saekit.pipeline.activations import VariantActivations, variant_activations
from saekit.pipeline.axes import consistency, dictionary_axes, mlp_post_hook, neuron_axes, summary
from saekit.pipeline.browsers import browsed_models, build_comparison_browsers
from saekit.pipeline.compare_crosscoder import CrosscoderSettings, compare_crosscoders, crosscoder_hook
from saekit.pipeline.dictionaries import EvalSettings, evaluate_dictionary, pick_examples, train_dictionary
from saekit.pipeline.editing import EditSettings, dictionary_editability, neuron_editability
from saekit.pipeline.priors import dictionary_priors
from saekit.pipeline.results import MetricsLog, new_results, variant_record, write_results
from saekit.pipeline.seeds import derive_seed
from saekit.pipeline.synthetic import synthetic_check
from saekit.pipeline.variants import SharedTokens, default_dict_cfgs, hooks_needed, load_variants, shared_tokens
from saekit.pipeline.verdicts import convergence, run_verdicts


@dataclass
class _Run:
    """What every step of one comparison shares."""

    out: Path
    dict_cfgs: dict[str, DictionaryConfig]
    seeds: tuple[int, ...]
    tcfg: TrainConfig
    tokens: SharedTokens
    eval_settings: EvalSettings
    results: dict[str, Any]
    log: MetricsLog
    quiet: bool
    saes: dict[tuple[str, str, int], torch.nn.Module] = field(default_factory=dict)
    dict_axes: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)  # per-latent arrays kept
    model_axes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # per-neuron arrays kept
    lm_loss: dict[str, float] = field(default_factory=dict)
    edit: EditSettings | None = None
    edit_cache: dict = field(default_factory=dict)  # concept set per tokenizer
    timing: dict[str, float] = field(default_factory=dict)

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[compare] {msg}", file=sys.stderr, flush=True)


def run_comparison(
    variant_dirs: list[str | Path],
    dict_cfgs: dict[str, DictionaryConfig] | None = None,
    out_dir: str | Path = "runs/compare",
    seeds: tuple[int, ...] = (0, 1, 2),
    train_tokens: int = 100_000,
    tcfg: TrainConfig | None = None,
    n_eval_seqs: int = 512,
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
    dataset: str | None = None,
    split: str | None = None,
    text_column: str = "text",
    browse: bool | Sequence[str] = False,
    browse_tokens: int = 20_000,
    edit: EditSettings | None = None,
    crosscoder: CrosscoderSettings | None = None,
) -> dict[str, Any]:
    """Train, evaluate and compare dictionaries across model variants; write results.json (+ report.html).

    variant_dirs: saekit model folders (``saekit model train``), e.g. baseline, act_l1, random. Folders
      of one variant (and coefficient), or of one ``--group``, form one group: its model seeds.
    dict_cfgs: name -> DictionaryConfig with ``hook_name`` set (a transcoder's input hook; its output
      hook is the same layer's ``hook_mlp_out``); default ``default_dict_cfgs``: a top-k SAE and a
      top-k transcoder on the last layer's MLP.
    seeds: ≥ 2 dictionary seeds per model (the training seeds; see ``saekit.pipeline.seeds``), so every
      cross-variant figure has a seed noise floor beside it and consistency can be measured.
    n_eval_seqs: held-out sequences for metrics, auto-interp scoring and abstractness. Abstractness
      fits a mean per token id on half of them: at vocab 4096 and n_ctx 64, a latent that copies the
      current token scored 0.21 with 64 sequences, 0.044 with 512 and 0.006 with 2048 (it should be 0).
    report_path: where report.html goes (default ``out_dir/report.html``).
    cache_dir: if set, each variant's training activations (every hookpoint the dictionaries need)
      are written once with ``build_cache`` to ``cache_dir/<variant>`` and every dictionary and seed
      of that variant trains from shuffled, seeded readers of it; a complete cache from an earlier
      run is checked and reused, an interrupted one resumed, a stale one (a retrained variant)
      rebuilt. None (default): training activations are held in memory. Evaluation uses held-out
      activations in memory either way.
    dataset, split, text_column: the text every variant reads (``shared_tokens``): by default the
      built-in corpus (train split to train, validation split held out); with a dataset (a Hugging
      Face name or local text/JSONL/parquet files) or a split, the first contexts of that split train
      and the next ``n_eval_seqs`` are held out. Recorded in results.json as ``settings.data``.
    browse: build feature browsers (``saekit.pipeline.browsers``) of the first-seed dictionaries of every
      model (True) or of the models named (a variant's name: its first model seed), each site reading ``browse_tokens`` tokens; the report links them.
    edit: measure the editability axes of every dictionary and of every model's MLP neurons
      (``saekit.pipeline.editing``: units to half, selectivity AUC, steering efficiency, and the headline
      ``editability``) on this concept; the first seed's ablation and steering curves go to
      ``results["editing"]`` and the report.
    crosscoder: if set, also train crosscoders of the baseline against each other variant at one
      hookpoint, one per seed, over the same tokens (``saekit.pipeline.compare_crosscoder``);
      results.json gets ``crosscoders`` and the report a section linking each pair's page.
    The defaults fit the demo budget (a few minutes on a 2-core CPU for d_model = 128 models).
    """
    t_start = time.perf_counter()
    if len(seeds) < 2:
        raise ConfigError(f"seeds must name at least two seeds (for the noise floor), got {list(seeds)}.")
    handles, groups = load_variants(variant_dirs, device)
    browsed = browsed_models(handles, groups, browse)  # a bad name fails before any training
    first = next(iter(handles.values()))
    mcfg = first.model.cfg
    dict_cfgs = dict_cfgs or default_dict_cfgs(int(mcfg.d_model), int(mcfg.n_layers))
    tcfg = tcfg or TrainConfig(batch_size=1024, total_tokens=train_tokens, lr=2e-3, lr_warmup_steps=10, log_every=50)
    tcfg = tcfg.replace(device=device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokens = shared_tokens(first, train_tokens, n_explain_seqs, n_eval_seqs, dataset, split, text_column)
    run = _Run(
        out, dict_cfgs, tuple(seeds), tcfg, tokens, EvalSettings(n_splice_seqs, autointerp_latents, n_examples),
        new_results(handles, dict_cfgs, tuple(seeds), tokens, n_splice_seqs, tcfg, cache_dir), MetricsLog(out), quiet,
        edit=edit,
    )  # fmt: skip
    run.say(f"text: {tokens.describe()}")
    if edit is not None:
        run.results["editing"] = {
            "concept": edit.concept, "measure": edit.measure, "n_max": edit.n_max, "alphas": list(edit.alphas),
            "seed": run.seeds[0], "curves": {}, "neuron_curves": {},
        }  # fmt: skip
    acts: dict[str, VariantActivations] = {}
    firsts = [models[0] for models in groups.values()]  # cross-variant sections: one model per group
    run.results["groups"] = groups
    if tokens.contextual is not None:  # a planted language: every dictionary is scored against its labels
        n_ctx_labels = int(tokens.contextual.sum())
        run.results["ground_truth"] = {
            "dataset": tokens.dataset, "n_labels": len(tokens.contextual), "n_contextual": n_ctx_labels,
        }  # fmt: skip
    hooks = hooks_needed(dict_cfgs)
    xc_hook = crosscoder_hook(crosscoder, dict_cfgs) if crosscoder else None
    if xc_hook and xc_hook not in hooks:
        hooks.append(xc_hook)
    kept: dict[str, torch.Tensor] = {}  # training activations at the crosscoder hook, per model
    for v, handle in handles.items():
        t0 = time.perf_counter()
        run.say(f"{v}: reading activations at {', '.join(hooks)}")
        acts[v] = variant_activations(handle, tokens, hooks, n_explain_seqs, cache_dir and Path(cache_dir), v, quiet)
        run.timing[f"activations/{v}"] = time.perf_counter() - t0
        run.results["variants"][v] = {**variant_record(handle), "group": next(g for g, ms in groups.items() if v in ms)}
        _dictionaries_of_variant(run, v, handle, acts[v], split_widths and v in firsts)
        if xc_hook and v in firsts and acts[v].cache is None:
            kept[v] = acts[v].train[xc_hook]
        acts[v].train.clear()  # training activations are not needed again; held-out ones are
    _compare_variants(run, {v: acts[v] for v in firsts}, synthetic)
    if crosscoder:
        _crosscoders(run, crosscoder, groups, acts, kept, xc_hook, first.tokenizer)
    _verdicts(run, groups)
    if browsed:
        t0 = time.perf_counter()
        run.say(f"feature browsers of {', '.join(browsed)}")
        run.results["browsers"] = build_comparison_browsers(
            out, handles, list(dict_cfgs), run.seeds[0], browsed, browse_tokens, device
        )
        run.timing["browsers"] = time.perf_counter() - t0
    run.timing["total"] = time.perf_counter() - t_start
    run.results["timing_s"] = run.timing
    write_results(out, run.results)
    report_file = Path(report_path) if report_path else out / "report.html"
    if report:
        from saekit.report import write_report

        write_report(run.results, report_file, run_dir=out)
    run.say(f"wrote {out / 'results.json'}" + (f" and {report_file}" if report else ""))
    return run.results


def _dictionaries_of_variant(run: _Run, v: str, handle: Any, acts: VariantActivations, split_widths: bool) -> None:
    """Train, evaluate and record every dictionary config × seed of one variant (+ its splitting probe)."""
    for name, cfg in run.dict_cfgs.items():
        cfg_v = cfg.replace(variant=v, model_name=handle.name)
        for seed in run.seeds:
            t1 = time.perf_counter()
            run.say(f"{v}/{name}/seed {seed}: training")
            sae = train_dictionary(cfg_v, acts, run.tcfg, seed, progress=not run.quiet)
            run.saes[(v, name, seed)] = sae
            sae.save(run.out / v / name / f"seed{seed}")
            run.timing[f"train/{v}/{name}/{seed}"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            metrics, ai, acts_ev = evaluate_dictionary(
                sae, handle, acts, run.tokens, run.eval_settings, seed, (v, name)
            )
            labels = None if run.tokens.eval_labels is None else (run.tokens.eval_labels, run.tokens.contextual)
            axes = dictionary_axes(sae, handle, acts, run.tokens.eval, metrics, ai, seed, labels)
            if run.edit is not None:
                _editability(run, v, name, seed, sae, handle, axes)
            run.dict_axes[(v, name, seed)] = axes
            rec = {"variant": v, "dict": name, "seed": seed, "metrics": metrics, "axes": summary(axes)}
            rec["autointerp"] = {k: val for k, val in ai.items() if k != "latents"}
            rec["priors"] = dictionary_priors(acts_ev, derive_seed(seed, "priors", v, name), run.eval_settings.prior_latents)
            if metrics.get("clean_loss") is not None:
                run.lm_loss[v] = metrics["clean_loss"]
            rec["time_s"] = time.perf_counter() - t1
            run.results["dictionaries"].append(rec)
            run.log.append(rec)
            if seed == run.seeds[0]:
                n = run.eval_settings.n_examples
                run.results["examples"] += pick_examples((v, name), ai, acts_ev, run.tokens, handle.tokenizer, n, seed)
        decoders = [run.saes[(v, name, s)].W_dec.detach() for s in run.seeds]
        run.model_axes[(v, name)] = consistency(decoders)
        post = mlp_post_hook(cfg)
        if post is not None and hasattr(handle.model, "blocks"):
            run.model_axes[(v, name)].update(neuron_axes(
                handle, post, run.tokens.train[: acts.n_explain_seqs], run.tokens.eval, run.seeds[0],
                n_neurons=run.eval_settings.autointerp_latents, label=v,
            ))  # fmt: skip
            if run.edit is not None:
                _neuron_editability(run, v, name, handle, post)
    split_name = next((n for n, c in run.dict_cfgs.items() if not c.transcoder and c.n_latents >= 8), None)
    if split_widths and split_name is not None:
        run.say(f"{v}/{split_name}: training a 4x narrower dictionary for feature splitting")
        cfg_v = run.dict_cfgs[split_name].replace(variant=v, model_name=handle.name)
        wide = run.saes[(v, split_name, run.seeds[0])]
        probe = crossvariant.split_probe(split_name, cfg_v, acts, wide, run.tcfg, run.seeds[0], not run.quiet)
        run.results.setdefault("feature_splitting", {})[v] = probe


def _editability(run: _Run, v: str, name: str, seed: int, sae: Any, handle: Any, axes: dict[str, Any]) -> None:
    """The editability axis of one dictionary (and, for the first seed, its curves for the report)."""
    t0 = time.perf_counter()
    first = seed == run.seeds[0]
    values, curves = dictionary_editability(sae, handle, run.edit, run.edit_cache, curves=first)
    if values is not None:
        axes.update(values)
    if curves is not None:
        run.results["editing"]["curves"].setdefault(name, {})[v] = curves
    run.timing[f"edit/{v}/{name}/{seed}"] = time.perf_counter() - t0


def _neuron_editability(run: _Run, v: str, name: str, handle: Any, hook: str) -> None:
    """The neuron editability axes of one model at the MLP neurons of a dictionary's layer (once per hook)."""
    t0 = time.perf_counter()
    values, curves = neuron_editability(handle, hook, run.edit, run.edit_cache)
    run.model_axes[(v, name)].update(values)
    run.results["editing"]["neuron_curves"].setdefault(name, {})[v] = curves
    run.timing[f"edit/{v}/{name}/neurons"] = time.perf_counter() - t0


def _compare_variants(run: _Run, acts: dict[str, VariantActivations], synthetic: bool) -> None:
    run.results["matching"] = crossvariant.matching(run.dict_cfgs, run.seeds, run.saes, acts)
    run.results["cross_application"] = crossvariant.cross_application(run.dict_cfgs, run.seeds[0], run.saes, acts)
    if synthetic:
        seed = derive_seed(run.seeds[0], "synthetic")
        run.results["synthetic"] = synthetic_check(run.tcfg, seed=seed, quiet=run.quiet)


def _crosscoders(run: _Run, settings: CrosscoderSettings, groups, acts, kept, hook: str, tokenizer: Any) -> None:
    """Baseline-vs-variant crosscoders on the comparison's own training and held-out tokens."""
    from saekit.pipeline.activations import cache_reader, rows

    def source(model: str, seed: int) -> Any:
        return cache_reader(acts[model].cache, hook, seed) if acts[model].cache is not None else rows(kept[model])

    t0 = time.perf_counter()
    held = {v: a.held_out[hook] for v, a in acts.items()}
    run.results["crosscoders"] = compare_crosscoders(
        settings,
        run.dict_cfgs,
        groups,
        source,
        held,
        run.tokens.eval,
        tokenizer,
        run.tcfg,
        run.seeds,
        run.out,
        run.quiet,
    )
    run.timing["crosscoders"] = time.perf_counter() - t0


def _verdicts(run: _Run, groups: dict[str, list[str]]) -> None:
    """Convergence of each dictionary config (baseline seed consistency vs chance), then the verdicts."""
    run.results["model_axes"] = {f"{m}/{d}": summary(v) for (m, d), v in run.model_axes.items()}
    run.results["lm_loss"] = run.lm_loss
    base = groups.get("baseline", next(iter(groups.values())))
    conv = {}
    for name in run.dict_cfgs:
        per_model = {m: run.model_axes[(m, name)] for m in base}
        conv[name] = convergence(name, per_model, tuple(run.saes[(base[0], name, run.seeds[0])].W_dec.shape))
    run.results["convergence"] = conv
    measure = run.edit.measure if run.edit is not None else None
    out = run_verdicts(groups, run.dict_axes, run.model_axes, run.lm_loss, conv, seed=run.seeds[0], edit_measure=measure)
    run.results["verdicts"] = out["verdicts"]
    run.results["verdicts_note"] = out["note"]
