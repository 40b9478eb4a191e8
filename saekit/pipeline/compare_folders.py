"""The comparison from model folders and a JSON file of dictionary configs (what ``saekit compare``
runs): widths read from the model, then ``run_comparison``.

    results = compare_folders(["runs/models/baseline", "runs/models/random"], out_dir="runs/compare")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError


def dict_cfgs_from_file(path: str | Path, handle: Any) -> dict[str, DictionaryConfig]:
    """DictionaryConfigs from a JSON file (one config, a list, or {name: config}), with d_in, d_out
    and a transcoder's output hook filled from the model's hookpoints."""
    from saekit.activations import HookpointReader
    from saekit.evaluation.splice import split_hooks
    from saekit.fileutil import read_json

    data = read_json(path, "dictionary config")
    if isinstance(data, dict) and "kind" in data:
        data = {"dict": data}
    elif isinstance(data, list):
        data = {f"dict{i}": d for i, d in enumerate(data)}
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path} must hold a DictionaryConfig, a list of them or a {{name: config}} object.")
    out = {}
    for name, raw in data.items():
        raw = dict(raw)
        if not raw.get("hook_name"):
            raise ConfigError(f"dictionary {name!r} in {path} needs hook_name (the hookpoint to read).")
        # a throwaway config with placeholder widths, to learn which hooks the dictionary reads
        probe = {**raw, "d_in": 1, "d_out": 1, "n_latents": raw.get("n_latents") or 1, "k": 1 if raw.get("k") else None}
        in_hook, out_hook = split_hooks(DictionaryConfig.from_dict(probe))
        hooks = [h for h in (in_hook, out_hook) if h]
        with torch.no_grad():
            widths = {
                h: a.shape[-1] for h, a in HookpointReader(handle, hooks)(torch.zeros(1, 2, dtype=torch.long)).items()
            }
        raw.setdefault("d_in", int(widths[in_hook]))
        if out_hook:
            raw.setdefault("d_out", int(widths[out_hook]))
            raw.setdefault("hook_name_out", out_hook)
        out[name] = DictionaryConfig.from_dict(raw)
    return out


def compare_folders(
    variants: list[str | Path],
    config: str | Path | None = None,
    out_dir: str | Path = "runs/compare",
    seeds: tuple[int, ...] = (0, 1, 2),
    train_tokens: int = 100_000,
    batch_size: int = 1024,
    lr: float = 2e-3,
    eval_seqs: int = 512,
    autointerp_latents: int = 256,
    synthetic: bool = True,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    dataset: str | None = None,
    split: str | None = None,
    text_column: str = "text",
    browse: bool | list[str] = False,
    browse_tokens: int = 20_000,
    edit: Any = None,
    crosscoder: Any = None,
) -> dict[str, Any]:
    """Train the dictionaries of ``config`` (default: ``default_dict_cfgs``) on every model folder in
    ``variants``, evaluate and compare them; writes OUT/results.json and OUT/report.html. ``dataset``,
    ``split`` and ``text_column`` pick the text (see ``run_comparison``; default: the built-in corpus).
    crosscoder: a ``CrosscoderSettings`` adds baseline-vs-variant crosscoders (``saekit compare --crosscoder``)."""
    from saekit.models import load_model
    from saekit.pipeline.run import run_comparison

    dict_cfgs = dict_cfgs_from_file(config, load_model(variants[0], device=device)) if config else None
    tcfg = TrainConfig(batch_size=batch_size, total_tokens=train_tokens, lr=lr, lr_warmup_steps=10)
    return run_comparison(
        [Path(v) for v in variants],
        dict_cfgs,
        out_dir=out_dir,
        seeds=tuple(seeds),
        train_tokens=train_tokens,
        tcfg=tcfg,
        n_eval_seqs=eval_seqs,
        autointerp_latents=autointerp_latents,
        synthetic=synthetic,
        device=device,
        cache_dir=cache_dir,
        dataset=dataset,
        split=split,
        text_column=text_column,
        browse=browse,
        browse_tokens=browse_tokens,
        edit=edit,
        crosscoder=crosscoder,
    )
