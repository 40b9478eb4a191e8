"""A training spec: what ``saekit train`` runs, as plain data that a run folder keeps.

    {"source": {...}, "train": {...}, "dictionaries": [{...}, ...]}

``source`` names the activations (``saekit.activations.sources``), ``train`` holds
``TrainConfig`` fields and ``dictionaries`` ``DictionaryConfig`` fields (the widths are filled
from the source). A TOML config file has the tables ``[source]``, ``[train]``,
``[[dictionary]]`` and an optional ``[sweep]`` of lists crossed with every dictionary.
A run writes its spec to ``OUT/source.json`` so that ``--resume`` needs only ``--out``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from saekit.config import TOPK_KINDS, DictionaryConfig
from saekit.errors import ConfigError, DataError

SOURCE_FILE = "source.json"
TABLES = ("source", "train", "dictionary", "sweep")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file, with one sentence when it is missing or malformed."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    file = Path(path)
    if not file.is_file():
        raise DataError(f"config file {file} does not exist.")
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"config file {file} is not valid TOML ({e}).") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """A training config file's tables (source, train, dictionary, sweep), checked by name."""
    conf = read_toml(path)
    unknown = sorted(set(conf) - set(TABLES))
    if unknown:
        raise ConfigError(f"{path} has unknown table(s) {', '.join(unknown)}; expected {', '.join(TABLES)}.")
    return conf


def expand_sweep(dicts: list[dict], sweep: dict[str, list]) -> list[dict]:
    """Every dictionary table crossed with every combination of the [sweep] lists."""
    if not sweep:
        return dicts
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[sweep] {key} must be a non-empty list, got {values!r}.")
    keys = list(sweep)
    out = []
    for base in dicts:
        for combo in itertools.product(*(sweep[k] for k in keys)):
            out.append({**base, **dict(zip(keys, combo))})
    return out


def dictionary_configs(
    dicts: list[dict], d_in: int, d_out: int, paired: bool, origin: dict[str, str] | str | None = None
) -> list[DictionaryConfig]:
    """``DictionaryConfig``s from a spec's dictionary tables and the source's widths;
    ``origin`` ({hook_name, hook_name_out, model_name, variant}, or a hookpoint name) fills what a table leaves out."""
    origin = {"hook_name": origin or ""} if not isinstance(origin, dict) else origin
    cfgs = []
    for d in dicts:
        d = dict(d)
        d.setdefault("d_in", d_in)
        if paired:
            d.setdefault("d_out", d_out)
            d.setdefault("transcoder", True)
            d.setdefault("hook_name_out", origin.get("hook_name_out") or "")
        d.setdefault("hook_name", origin.get("hook_name") or "")
        if "n_latents" not in d:
            raise ConfigError("--n-latents (or n_latents in [[dictionary]]) is required.")
        kind = d.get("kind", "topk")
        if d.get("k") is not None and kind not in TOPK_KINDS:  # a flag that would silently do nothing
            raise ConfigError(
                f"k is the number of active latents of {', '.join(TOPK_KINDS)}; kind {kind!r} ignores it "
                "(its sparsity is set by sparsity_coef): drop k or choose kind topk."
            )
        cfg = DictionaryConfig.from_dict(d)
        cfg.model_name = cfg.model_name or origin.get("model_name", "")
        cfg.variant = cfg.variant or origin.get("variant", "")
        cfgs.append(cfg)
    return cfgs
