"""The peers' TopK training steps, written once for every benchmark that drives them
(defaults_vs_peers.py, train_vs_peers.py, gpu/train_step_peers.py).

Each class mirrors its framework's own trainer on one device:

- SAELens: ``TopKTrainingSAE.training_forward_pass`` (MSE + its AuxK), Adam, grad-norm clip 1.0;
  dead latents counted in forward passes since they last fired (SAELens's unit),
- sparsify: ``SparseCoder`` forward (FVU + AuxK/32), parallel-gradient removal, decoder
  renormalisation, b_dec set to the first batch's mean; Adam, or its trainer's default Signum
  (schedule-free SignSGD, momentum 0.95, evaluated at the averaged weights); dead latents
  counted in tokens since they last fired (sparsify's unit).

Only torch and the peer are imported, so the file runs inside a peer's own venv.
``step(x, dead_mask=None)`` uses the class's own dead-latent count unless given a mask.
"""

from __future__ import annotations

import torch


class SAELensTopK:
    def __init__(self, d: int, n: int, k: int, lr: float, device: str = "cpu", dead_steps: int = 10**9):
        from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

        self.sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=n, k=k, device=device, dtype="float32"))
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=lr, betas=(0.9, 0.999))
        self.since = torch.zeros(n, dtype=torch.long, device=device)
        self.dead_steps, self.i = dead_steps, 0

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def step(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> None:
        from sae_lens.saes.sae import TrainStepInput

        dead = self.since > self.dead_steps if dead_mask is None else dead_mask
        out = self.sae.training_forward_pass(
            TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=self.i, is_logging_step=False)
        )
        self.opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.sae.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            self.since += 1
            self.since[(out.feature_acts > 0).any(0)] = 0
        self.i += 1

    @torch.no_grad()
    def evaluate(self, xv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes, reconstructions, W_dec) on held-out rows."""
        z = self.sae.encode(xv)
        return z, self.sae.decode(z), self.sae.W_dec.detach()


class SparsifyTopK:
    def __init__(self, d: int, n: int, k: int, lr: float, optimizer: str = "adam", device: str = "cpu",
                 dead_tokens: int = 10**12):  # fmt: skip
        from sparsify import SparseCoder, SparseCoderConfig

        self.sae = SparseCoder(d, SparseCoderConfig(num_latents=n, k=k), device=device, dtype=torch.float32)
        self.signum = optimizer == "signum"
        if self.signum:  # sparsify's trainer: schedule-free SignSGD, momentum 0.95, constant lr
            from schedulefree import ScheduleFreeWrapper
            from sparsify.sign_sgd import SignSGD

            self.opt = ScheduleFreeWrapper(SignSGD([dict(params=self.sae.parameters(), lr=lr)]), momentum=0.95)
            self.opt.train()
        else:
            self.opt = torch.optim.Adam(self.sae.parameters(), lr=lr)
        self.n, self.dead_tokens, self.i = n, dead_tokens, 0
        self.since = torch.zeros(n, dtype=torch.long, device=device)

    def set_lr(self, lr: float) -> None:
        if not self.signum:  # Signum runs at a constant rate
            for g in self.opt.param_groups:
                g["lr"] = lr

    def step(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> None:
        if self.i == 0:
            with torch.no_grad():
                self.sae.b_dec.data = x.mean(0)  # sparsify's trainer: b_dec at the first batch's mean
        dead = self.since > self.dead_tokens if dead_mask is None else dead_mask
        out = self.sae(x, dead_mask=dead)
        (out.fvu + out.auxk_loss / 32).backward()
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad()
        self.sae.set_decoder_norm_to_unit_norm()
        with torch.no_grad():
            self.since += x.shape[0]
            self.since[out.latent_indices.flatten()] = 0
        self.i += 1

    @torch.no_grad()
    def evaluate(self, xv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes, reconstructions, W_dec) on held-out rows (Signum: at the averaged weights)."""
        if self.signum:
            self.opt.eval()
            self.sae.set_decoder_norm_to_unit_norm()
        enc = self.sae.encode(xv)
        z = torch.zeros(xv.shape[0], self.n, device=xv.device).scatter_(1, enc.top_indices, enc.top_acts)
        return z, self.sae.decode(enc.top_acts, enc.top_indices), self.sae.W_dec.detach()
