"""Step 5: the comparison's record: settings first, one line per dictionary in metrics.jsonl as it
finishes, and results.json (strict JSON) at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saekit.config import DictionaryConfig, TrainConfig
from saekit.fileutil import atomic_write_json
from saekit.jsonsafe import json_safe
from saekit.pipeline.variants import SharedTokens


def new_results(
    handles: dict[str, Any], dict_cfgs: dict[str, DictionaryConfig], seeds: tuple[int, ...], tokens: SharedTokens,
    n_splice_seqs: int, tcfg: TrainConfig, cache_dir: str | Path | None,
) -> dict[str, Any]:  # fmt: skip
    """The results skeleton: what was compared and with which settings."""
    per_seq = tokens.tokens_per_seq
    settings: dict[str, Any] = {
        "variants": {v: str(h.path) for v, h in handles.items()},
        "dictionaries": {n: c.to_dict() for n, c in dict_cfgs.items()},
        "variant_order": list(handles),  # results.json sorts keys; the report keeps this order
        "dict_order": list(dict_cfgs),
        "seeds": list(seeds),
        "train_tokens": int(tokens.train.shape[0] * per_seq),
        "eval_tokens": int(tokens.eval.shape[0] * per_seq),
        "splice_tokens": int(min(n_splice_seqs, tokens.eval.shape[0]) * per_seq),
        "train_config": tcfg.to_dict(),
        "n_ctx": tokens.n_ctx,
        "data": tokens.source,  # which text trained the dictionaries and which was held out
    }
    if cache_dir is not None:
        settings["cache_dir"] = str(cache_dir)
    return {"settings": settings, "variants": {}, "dictionaries": [], "examples": []}


def variant_record(handle: Any) -> dict[str, Any]:
    keys = ("variant", "coef", "val_loss", "train_loss", "mlp_zero_fraction")
    return {"path": str(handle.path), "info": {k: handle.info.get(k) for k in keys} if handle.info else {}}


class MetricsLog:
    """OUT/metrics.jsonl: one line per finished dictionary; each run's log starts empty."""

    def __init__(self, out: Path):
        self.path = out / "metrics.jsonl"
        self.path.unlink(missing_ok=True)

    def append(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(json.dumps(json_safe(rec), sort_keys=True) + "\n")


def write_results(out: Path, results: dict[str, Any]) -> Path:
    return atomic_write_json(out / "results.json", json_safe(results))
