"""Feature browsers for a comparison (``saekit compare --browse``, ``saekit demo``).

One static site per dictionary config, under ``OUT/browser/<dict>/``, holding the first-seed
dictionary of every browsed model: each latent page links its best decoder match in every other
model's dictionary, so a latent of act_l1 is one click from its counterpart in the baseline.
Building one site per config (not one per dictionary) reads each dictionary's activations once.
The records go to ``results["browsers"]``, paths relative to the run folder; the report links them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saekit.errors import ConfigError

BROWSER_DIR = "browser"


def browsed_models(handles: dict[str, Any], groups: dict[str, list[str]], browse: bool | Sequence[str]) -> list[str]:
    """The models whose dictionaries get a browser: all (``True``) or the ones named (a group's name
    stands for its first model seed)."""
    if browse is True:
        return list(handles)
    chosen = []
    for m in browse or []:
        if m not in handles and m not in groups:
            known = ", ".join(dict.fromkeys([*groups, *handles]))
            raise ConfigError(f"browse names {m!r}, which is no model or variant of this run; expected one of {known}.")
        m = m if m in handles else groups[m][0]
        if m not in chosen:
            chosen.append(m)
    return chosen


def site_name(model: str) -> str:
    """A model's dictionary name inside a site (what ``#dict=NAME`` links use)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model) or "model"


def build_comparison_browsers(
    out: Path,
    handles: dict[str, Any],
    dict_names: Sequence[str],
    seed: int,
    models: Sequence[str],
    tokens: int,
    device: str = "cpu",
) -> dict[str, Any]:
    """Build OUT/browser/<dict>/ for each dictionary config over ``models`` (their ``seed`` dictionaries,
    as saved under OUT/<model>/<dict>/seed<seed>); returns {dict: {"index", "names": {model: name}}}."""
    from saekit.report.feature_browser import build_browser

    records: dict[str, Any] = {}
    if not models:
        return records
    for d in dict_names:
        paths = [str(out / m / d / f"seed{seed}") for m in models]
        model_paths = [str(handles[m].path) for m in models]
        names = [site_name(m) for m in models]
        site = out / BROWSER_DIR / d
        build_browser(
            paths[0], model_paths[0], site, tokens=tokens, compare=paths[1:], compare_models=model_paths[1:],
            device=device, overwrite=True, names=names,
        )  # fmt: skip
        records[d] = {
            "index": (site / "index.html").relative_to(out).as_posix(),
            "seed": seed,
            "names": dict(zip(models, names)),
        }
    return records
