"""Dead-latent tracking by tokens since each latent last fired."""

from __future__ import annotations

import torch


class DeadLatentTracker:
    """Counts, per latent, the tokens seen since it last fired; dead = count ≥ window."""

    def __init__(self, n_latents: int, window: int, device: torch.device | str = "cpu"):
        self.window = int(window)
        self.tokens_since_fired = torch.zeros(n_latents, dtype=torch.long, device=device)

    def update(self, fired: torch.Tensor, n_tokens: int) -> None:
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired.masked_fill_(fired, 0)  # fired: [n] bool; in place, no boolean gather

    def dead_mask(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.window

    def dead_fraction(self) -> float:
        return float(self.dead_mask().float().mean())

    def reset(self, latents: torch.Tensor) -> None:
        self.tokens_since_fired[latents] = 0

    def state_dict(self) -> dict:
        return {"window": self.window, "tokens_since_fired": self.tokens_since_fired.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.window = int(state["window"])
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
