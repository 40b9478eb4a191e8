"""A sweep-free quality guard: read a run's logged metrics and say when it looks under-trained or
collapsed, and what to change.

    for message in quality_warnings(trainer.metrics.records):
        print(message)

Checks, per dictionary (records are ``metrics.jsonl`` objects: step, dict, fvu, l0, dead_fraction):

* under-trained: the batch FVU is still falling steeply where the learning rate starts to decay
  (at the end of a run without decay): the decay's own gain, Adam's noise annealed away, is
  larger since a top-k decoder steps at 3x the rate (session 9) and says nothing about more
  tokens. With ``drop`` its fall from the 10 % of the logged steps before the last 10 % to the
  last 10 % (of the steps up to the decay): ``drop`` is more than
  ``steep_fall`` (5 %) of the FVU, or more than 1 % of it and more than ``fall`` (8 %) of all
  the FVU gained since the first 10 % (a steady fall makes 10 %). Good runs on the synthetic
  set of tests/test_defaults.py drop up to 8 % over the decay's last 10 % of steps; the planted
  under-trained run (no decay) about 3.4 % a window and 11 % of its gain. A run still falling
  fast would gain from more tokens or a higher learning rate.
* collapsed: the mean L0 over the last 10 % is below ``min_l0`` (0.5: most tokens get no latent,
  the sparsity penalty won over the reconstruction), or nearly all latents (``max_dead``, 90 %)
  are dead (a dictionary wider than the data's set of features leaves many latents unused: half
  dead is not yet a collapse).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger("saekit.training")


def _split(records: list[dict], last: int) -> tuple[list[dict], list[dict]]:
    """(records of the last ``window`` steps, records of the ``window`` steps before them)."""
    window = max(1, round(0.1 * last))
    tail = [r for r in records if r["step"] > last - window]
    before = [r for r in records if last - 2 * window < r["step"] <= last - window]
    return tail, before


def _mean(rows: list[dict], key: str) -> float:
    return sum(float(r[key]) for r in rows) / len(rows)


def _one(
    name: str, records: list[dict], fall: float, steep_fall: float, min_l0: float, max_dead: float, decay_start: int | None
) -> list[str]:
    records = sorted(records, key=lambda r: r["step"])
    last = int(records[-1]["step"])
    tail, _ = _split(records, last)
    who = "" if name == "dictionary" else f"dictionary {name}: "
    out = []
    l0 = _mean(tail, "l0")
    dead = float(records[-1].get("dead_fraction", 0.0))
    if l0 < min_l0:
        out.append(
            f"{who}the run collapsed: L0 is {l0:.2f} at the end (almost no latent fires); "
            "lower sparsity_coef (or train on normalised inputs, TrainConfig(normalize=True))."
        )
    if dead >= max_dead:
        out.append(
            f"{who}{dead:.0%} of the latents are dead at the end; lower the learning rate, use fewer "
            "latents, or for relu set resample_dead_every."
        )
    # the fall is read where the learning rate starts to decay: the decay's own gain (Adam's noise
    # annealed away) is not a sign that more tokens would help
    end = decay_start if decay_start is not None and 0.5 * last <= decay_start < last else last
    recent_rows, before = _split([r for r in records if r["step"] <= end], end)
    first = [r for r in records if r["step"] <= max(1, round(0.1 * end))]
    if len(recent_rows) >= 2 and len(before) >= 2 and first:
        now, then, start = _mean(recent_rows, "fvu"), _mean(before, "fvu"), _mean(first, "fvu")
        gained, recent = start - now, then - now
        steep = recent > steep_fall * then  # fast, relative to where it is
        unfinished = recent > 0.01 * then and recent > fall * max(gained, 1e-12)  # relative to its history
        if steep or unfinished:
            out.append(
                f"{who}the run looks under-trained: FVU is still falling ({then:.3f} to {now:.3f} over the last "
                f"10 % of steps, {recent / max(gained, 1e-12):.0%} of all it gained); train on more tokens "
                "(total_tokens) or raise lr."
            )
    return out


def quality_warnings(
    history: Iterable[dict],
    fall: float = 0.08,
    steep_fall: float = 0.05,
    min_l0: float = 0.5,
    max_dead: float = 0.9,
    decay_start: int | None = None,
) -> list[str]:
    """Warnings (one sentence each, saying what to change) for the dictionaries of a run whose
    logged metrics ``history`` look under-trained or collapsed; empty when the run looks fine.
    ``decay_start``: the step where the learning rate starts to decay (the fall is read there)."""
    by_dict: dict[str, list[dict]] = {}
    for r in history:
        if "fvu" in r and "step" in r:
            by_dict.setdefault(str(r.get("dict", "dictionary")), []).append(r)
    out = []
    for name, records in by_dict.items():
        out += _one(name, records, fall, steep_fall, min_l0, max_dead, decay_start)
    return out


def warn_quality(history: Iterable[dict], decay_start: int | None = None) -> list[str]:
    """Log each of ``quality_warnings(history, decay_start=...)`` on the ``saekit.training`` logger; return them."""
    messages = quality_warnings(history, decay_start=decay_start)
    for m in messages:
        logger.warning(m)
    return messages
