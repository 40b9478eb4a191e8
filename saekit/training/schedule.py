"""Learning-rate schedule: linear warm-up, constant, linear decay to 0 over the last fraction."""

from __future__ import annotations


def decay_start(total_steps: int, decay_fraction: float) -> int:
    """The first step (0-based) of the linear decay; ``total_steps`` when there is none."""
    return total_steps - int(total_steps * decay_fraction)


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay_fraction: float) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    warmup = min(warmup_steps, max(0, total_steps - 1))
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    start = decay_start(total_steps, decay_fraction)
    if start < total_steps and step >= start:
        return max(0.0, (total_steps - step) / (total_steps - start))
    return 1.0
