"""Learning-rate schedule: linear warm-up, constant, linear decay to 0 over the last fraction."""

from __future__ import annotations


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay_fraction: float) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    warmup = min(warmup_steps, max(0, total_steps - 1))
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_steps = int(total_steps * decay_fraction)
    decay_start = total_steps - decay_steps
    if decay_steps > 0 and step >= decay_start:
        return max(0.0, (total_steps - step) / decay_steps)
    return 1.0
