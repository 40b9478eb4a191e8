"""The training loop: one stream of batches, one or many dictionaries (a sweep), exact resume.

    trainer = Trainer([cfg_a, cfg_b], source, tcfg)   # every dictionary sees the same batches
    saes = trainer.fit()

A step per dictionary: loss (with AuxK / penalties) → backward → remove the decoder-gradient
component parallel to each unit-norm row → reduce the gradients → clip → Adam → renormalise
decoder rows → dead-latent counters. The loop has no ranks: what other processes would change
(which rows, gradient reduction, clipping, fired masks, who writes, checkpoint paths, the final
assembly) belongs to the strategy object (``saekit.training.strategy.Solo`` by default; data
parallelism and latent sharding are strategies in ``saekit.parallel``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saekit.config import TOPK_KINDS, DictionaryConfig, TrainConfig
from saekit.device import resolve_device
from saekit.dictionaries import SparseDictionary, init_b_dec
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_write_json
from saekit.kernels import use_backend
from saekit.progress import token_bar
from saekit.training.average import TailAverage
from saekit.training.checkpoint import save_checkpoint
from saekit.training.dead import DeadLatentTracker
from saekit.training.guard import warn_quality
from saekit.training.metrics import MetricsLog
from saekit.training.optim_state import group_names, load_optimizer_state
from saekit.training.resample import resample_dead
from saekit.training.schedule import decay_start, lr_factor
from saekit.training.sources import BatchSource, as_source, check_sources
from saekit.training.spread import spread_factor
from saekit.training.strategy import Solo
from saekit.training.summary import summary_line

INIT_SAMPLE = 4096  # rows used for b_dec (geometric median) and the normalisation scale


@dataclass
class Run:
    """One dictionary being trained, with its optimiser and counters."""

    name: str
    sae: SparseDictionary
    optimizer: torch.optim.Optimizer
    base_lr: float
    tracker: DeadLatentTracker
    generator: torch.Generator  # resampling draws
    average: TailAverage  # the weights' mean over the run's tail: what finish() keeps


def run_names(cfgs: list[DictionaryConfig]) -> list[str]:
    """Readable, unique folder names for a sweep (e.g. ``00_topk_n4096_k32``)."""
    names = []
    for i, c in enumerate(cfgs):
        s = f"{i:02d}_{c.kind}_n{c.n_latents}"
        s += f"_k{c.k}" if c.kind in TOPK_KINDS else f"_l{c.sparsity_coef:g}"
        if c.skip:
            s += "_skip"
        names.append(s)
    return names


class Trainer:
    """Trains ``cfgs`` on ``source`` per ``tcfg``, sharing work with other processes through
    ``strategy`` (``Solo()``, one process, when None)."""

    def __init__(
        self,
        cfgs: DictionaryConfig | list[DictionaryConfig],
        source: Any,
        tcfg: TrainConfig | None = None,
        names: list[str] | None = None,
        progress: bool = True,
        *,
        strategy: Solo | None = None,
    ):
        self.cfgs = [cfgs] if isinstance(cfgs, DictionaryConfig) else list(cfgs)
        if not self.cfgs:
            raise ConfigError("train() needs at least one DictionaryConfig.")
        for c in self.cfgs:
            if not isinstance(c, DictionaryConfig):
                raise ConfigError(f"train() expects DictionaryConfig objects, got {type(c).__name__}.")
        self.tcfg = tcfg or TrainConfig()
        self.device = resolve_device(self.tcfg.device)
        self.out_dir = Path(self.tcfg.out_dir) if self.tcfg.out_dir else None
        self.strategy = strategy if strategy is not None else Solo()
        self.strategy.bind(self.out_dir, self.tcfg)
        self.source: BatchSource = as_source(source, seed=self.tcfg.seed)
        self._check_shapes()
        self.names = names or (["dictionary"] if len(self.cfgs) == 1 else run_names(self.cfgs))
        self.total_steps = self.tcfg.steps
        self._pending: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        init_rows = self._init_rows()
        self.spread = self._measure_spread(init_rows[0])
        weights = self._long_run_weights(self.spread)
        # the defaults that depend on the run: W_dec's rate, annealed Lp's schedule
        self.cfgs = [c.for_run(self.total_steps, w) for c, w in zip(self.cfgs, weights)]
        self.step_count = 0
        self.tokens = 0
        self.progress = progress
        writes = self.out_dir is not None and self.strategy.writes
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl" if writes else None)
        self._last_batch: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.runs = [self._make_run(c, n, w) for c, n, w in zip(self.cfgs, self.names, weights)]
        self._initialise(*init_rows)
        self.strategy.after_init(self.describe(), {run.name: run.sae for run in self.runs})

    # ------------------------------------------------------------------ setup
    def _check_shapes(self) -> None:
        src = self.source
        for i, c in enumerate(self.cfgs):
            which = "" if len(self.cfgs) == 1 else f" of dictionary {i}"
            if c.d_in != src.d_in:
                raise ConfigError(
                    f"d_in{which} is {c.d_in} but the activations have width {src.d_in}; set d_in={src.d_in}."
                )
            if src.paired and not c.transcoder:
                raise ConfigError(
                    f"the source yields (input, output) pairs but dictionary{which} is an SAE; "
                    f"set d_out={src.d_out} (or transcoder=True) to train a transcoder."
                )
            if c.transcoder and not src.paired:
                raise ConfigError(
                    f"dictionary{which} is a transcoder but the source yields only inputs; "
                    "pass a pair (X, Y) or a source with output activations."
                )
            if c.d_out != src.d_out:
                raise ConfigError(f"d_out{which} is {c.d_out} but the target activations have width {src.d_out}.")
            self.cfgs[i] = check_sources(c, src, which)  # crosscoders: n_sources and source names

    def _make_run(self, cfg: DictionaryConfig, name: str, long_run: float) -> Run:
        seed = self.tcfg.seed if cfg.seed is None else cfg.seed
        sae = self.strategy.make_dictionary(cfg, seed, self.device)
        lr = self.tcfg.learning_rate(cfg.n_latents, self.spread, long_run)
        opt = torch.optim.Adam(sae.param_groups(), lr=lr, betas=self.tcfg.betas())
        tracker = DeadLatentTracker(self.strategy.latents_here(sae), self.tcfg.dead_token_window(cfg.n_latents, cfg.k if cfg.n_sources == 1 else None), self.device)
        average = TailAverage(decay_start(self.total_steps, self.tcfg.tail_fraction(long_run)))
        return Run(name, sae, opt, lr, tracker, torch.Generator().manual_seed(seed + 104729), average)

    @torch.no_grad()
    def _init_rows(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The finite rows (and targets) of a sample of the source, on the training device, for b_dec,
        the normalisation scale and the data's spread (not moving the reader if it can sample; else
        the first batch, which is then also trained on)."""
        sample = self.source.sample(INIT_SAMPLE)
        if sample is None:
            batch = self.source.next_batch(self.tcfg.batch_size)
            self._pending.append(batch)
            sample = batch
        x, y = (t.to(self.device, torch.float32) if t is not None else None for t in sample)
        # Rows with NaN/inf are left out of the initialisation; if they are in the training
        # stream, the step that meets them stops with a message naming it.
        ok = torch.isfinite(x).flatten(1).all(-1) & (torch.isfinite(y).all(-1) if y is not None else True)
        if not bool(ok.any()):
            raise DataError("every activation row sampled for initialisation has NaN or inf values.")
        return x[ok], (y[ok] if y is not None else None)

    def _long_run_weights(self, spread: float) -> list[float]:
        """Each dictionary's weight of the long-run rule of crowded dictionaries, which sets the base
        rate and W_dec's together: 0 for all when ``lr`` is given (DictionaryConfig.long_run_weight)."""
        if self.tcfg.lr is not None:
            return [0.0] * len(self.cfgs)
        return [c.long_run_weight(self.total_steps, spread) for c in self.cfgs]

    def _measure_spread(self, x: torch.Tensor) -> float:
        """The data's spread where a default rate reads it (a Gram matrix: only then), else 1."""
        crowded = any(w > 0 for w in self._long_run_weights(1.0))
        return self.strategy.agree(spread_factor(x)) if self.tcfg.rate_follows_spread(crowded) else 1.0

    @torch.no_grad()
    def _initialise(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """The runs' normalisation scale and b_dec from the initialisation rows (_init_rows)."""
        scale = 1.0
        if any(self.tcfg.normalizes(c.kind) for c in self.cfgs) and self.source.pre_scaled is None:
            # E||x||² = d_in after scaling (SAELens/Anthropic convention); one scalar per source
            # (a transcoder's targets share the input's scale).
            if self.source.norm_scale is not None:
                scale = self.source.norm_scale
            else:
                scale = math.sqrt(x.shape[1] / float(x.pow(2).sum(-1).mean().clamp_min(1e-12)))
        target = x if y is None else y
        for run in self.runs:
            s = scale if self.tcfg.normalizes(run.sae.kind) else 1.0
            run.sae.act_scale.copy_(torch.as_tensor(s).expand_as(run.sae.act_scale))  # [M, 1] for crosscoders
            init_b_dec(run.sae, target * torch.as_tensor(s, dtype=target.dtype, device=target.device))

    # ------------------------------------------------------------------ data
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows of the next batch this process trains on, on the training device."""
        x, y = self.strategy.read_batch(self.source, self.tcfg.batch_size, self._pending)
        return x.to(self.device, non_blocking=True), (y.to(self.device, non_blocking=True) if y is not None else None)

    # ------------------------------------------------------------------ one step
    def step(self, x: torch.Tensor, y: torch.Tensor | None = None) -> list[dict[str, float]] | None:
        """One optimiser step of every dictionary on batch (x, y). Returns metrics on log steps."""
        step = self.step_count
        bad = _nonfinite(x, y)
        if bad is not None:
            self._on_bad_batch()
            raise DataError(
                f"the batch at step {step} has NaN or inf values in {bad}; training stopped{self._checkpoint_note()}."
            )
        n_tokens = self.strategy.global_rows(x.shape[0])
        strategy = self.strategy
        x = x.float()
        y = y.float() if y is not None else None
        factor = lr_factor(step, self.total_steps, self.tcfg.warmup_steps(), self.tcfg.lr_decay_fraction)
        outs = []
        # All backward passes first, all updates after: a non-finite loss in any dictionary of a
        # sweep stops the run before any of them has taken the step.
        for run in self.runs:
            run.optimizer.zero_grad(set_to_none=True)
            with (
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.tcfg.autocast_bf16),
                use_backend(self.tcfg.use_kernels),
            ):
                out = run.sae.training_loss(x, y, dead_mask=run.tracker.dead_mask(), step=step)
            if not bool(torch.isfinite(out.loss)):
                self._on_bad_batch()
                raise DataError(
                    f"the loss of dictionary {run.name} became {float(out.loss.detach())} at step {step} "
                    f"(lower the learning rate or check the activations){self._checkpoint_note()}."
                )
            out.loss.backward()
            outs.append(out)
        log = self._is_log_step(step)
        records = []
        for run, out in zip(self.runs, outs):
            sae = run.sae
            sae.remove_parallel_decoder_grad()
            strategy.reduce_gradients(sae)
            if self.tcfg.grad_clip and self.tcfg.grad_clip > 0:
                strategy.clip_gradients(sae, self.tcfg.grad_clip)
            lr = run.base_lr * factor
            for g in run.optimizer.param_groups:
                g["lr"] = lr * group_lr_scale(g, run.base_lr, self.total_steps)  # a kind may step some faster
            run.optimizer.step()
            sae.after_step()
            run.tracker.update(strategy.reduce_fired(out.fired), n_tokens)
            every = self.tcfg.resample_dead_every
            if every and sae.kind == "relu" and (step + 1) % every == 0 and (step + 1) < self.total_steps:
                dead = run.tracker.dead_mask()
                if resample_dead(sae, run.optimizer, dead, *strategy.gather_batch(x, y), run.generator):
                    run.tracker.reset(dead)
                    run.average.restart()  # the moved latents' earlier weights must not enter the mean
            run.average.update(sae, step)
            if log:
                records.append(self._record(run, out, x, y, lr, n_tokens))
        self.step_count += 1
        self.tokens += n_tokens
        self._last_batch = None
        return records if log else None

    def _is_log_step(self, step: int) -> bool:
        return self.tcfg.log_every > 0 and (step % self.tcfg.log_every == 0 or step == self.total_steps - 1)

    @torch.no_grad()
    def _record(self, run: Run, out, x, y, lr: float, n_tokens: int) -> dict[str, Any]:
        sae = run.sae
        ys = sae.scale_in(x if y is None else y)
        y_hat = out.y_hat.float()
        var = (ys - ys.mean(0)).pow(2).sum()
        rec = {
            "step": self.step_count + 1,  # steps completed, as in checkpoints
            "tokens": self.tokens + n_tokens,
            "dict": run.name,
            "loss": float(out.loss),
            "fvu": float((ys - y_hat).pow(2).sum() / var.clamp_min(1e-12)),
            "l0": float(out.l0),
            "dead_fraction": run.tracker.dead_fraction(),
            "lr": lr,
        }
        rec.update({k: float(v) for k, v in out.terms.items()})
        rec = self.strategy.reduce_record(rec, run, out, x, y)
        if "mse" in rec:  # one definition with eval.json: mean over tokens AND dimensions, raw units
            pre = self.source.pre_scaled_out or self.source.pre_scaled or 1.0
            rec["recon_loss"] = rec["mse"]  # the loss term: squared error summed over dimensions, scaled
            if sae.act_scale.numel() == 1:
                rec["mse"] = rec["mse"] / (ys.shape[-1] * (float(sae.act_scale) * pre) ** 2)
            else:  # a crosscoder: one scale per source [M, 1] over [B, M, d]
                rec["mse"] = float(((ys - y_hat) / (sae.act_scale * pre)).pow(2).mean())
        return rec

    # ------------------------------------------------------------------ the loop
    def fit(self) -> list[SparseDictionary]:
        """Train to ``tcfg.total_tokens``; write checkpoints, metrics and the dictionaries."""
        self.begin()
        try:
            while self.step_count < self.total_steps:
                self.advance()
                if self.checkpoint_due():
                    self.save_checkpoint()
        finally:
            self.close()
        if self.out_dir is not None:
            self.save_checkpoint()
        return self.finish()

    def begin(self, note: dict[str, Any] | None = None) -> None:
        """Before the first step: ``train_config.json`` (plus ``note``) and the progress bar."""
        if self.out_dir is not None and self.strategy.writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out_dir / "train_config.json", {**self.describe(), **(note or {})})
        n = len(self.runs)
        self._bar = token_bar(
            self.total_steps * self.tcfg.batch_size,
            desc=f"train {n} dictionar{'y' if n == 1 else 'ies'}",
            disable=None if self.progress and self.strategy.writes else True,
        )
        self._bar.update(self.tokens)
        self._t0, self._tok0 = time.perf_counter(), self.tokens

    def advance(self) -> None:
        """One step on the next batch, with its metrics logged."""
        x, y = self.next_batch()
        self._last_batch = (x, y)
        records = self.step(x, y)
        self._bar.update(self.strategy.global_rows(x.shape[0]))
        if records and self.strategy.writes:
            rate = (self.tokens - self._tok0) / max(time.perf_counter() - self._t0, 1e-9)
            for r in records:
                r["tokens_per_s"] = rate
                self.metrics.write(r)
            self._bar.set_postfix(fvu=f"{records[0]['fvu']:.3f}", l0=f"{records[0]['l0']:.1f}")

    def checkpoint_due(self) -> bool:
        every = self.tcfg.checkpoint_every
        return bool(every) and self.step_count % every == 0 and self.step_count < self.total_steps

    def close(self) -> None:
        self._bar.close()
        self.metrics.close()

    def finish(self) -> list[SparseDictionary]:
        """After the last step: the trained dictionaries (their weights' mean over the tail, see
        saekit.training.average), assembled by the strategy and written."""
        for run in self.runs:
            run.average.apply(run.sae)
        if self.source.pre_scaled is not None:
            self._unscale()
        saes = [run.sae.to_inference() for run in self.runs]
        write = self.out_dir is not None and self.strategy.writes
        densities = self.densities() if write or (self.out_dir is not None and self.strategy.collective_encode) else None
        saes = self.strategy.assemble(saes)
        if write:
            self.save_dictionaries(saes, densities)
        self.strategy.finish()
        if self.progress and self.strategy.writes:
            done = self.tokens - self._tok0
            print(summary_line(self.metrics.records, len(self.runs), done, time.perf_counter() - self._t0, self.out_dir), file=sys.stderr)
        if self.strategy.writes:
            decay_from = decay_start(self.total_steps, self.tcfg.lr_decay_fraction)
            warn_quality(self.metrics.records, decay_from)  # under-trained or collapsed: say what to change
        return saes

    @torch.no_grad()
    def _unscale(self) -> None:
        # The source multiplied every batch by its scale: the dictionary learnt on scaled
        # activations, so it takes that scale as act_scale to work on raw ones.
        s_in = self.source.pre_scaled
        ratio = s_in / (self.source.pre_scaled_out or s_in)
        for run in self.runs:
            sae = run.sae
            sae.act_scale.fill_(s_in)
            if ratio != 1.0:
                # targets were scaled by s_out, not s_in: rescale the output side so that
                # forward(x) = f(s_in·x)/s_in equals f(s_in·x)/s_out
                for p in (sae.W_dec, sae.b_dec, sae.W_skip):
                    if p is not None:
                        p.mul_(ratio)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path | None:
        return self.strategy.checkpoint_path()

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "tokens": self.tokens,
            "train_config": self.tcfg.to_dict(),
            "source": self.source.state_dict(),
            "pending": [(x.cpu(), y.cpu() if y is not None else None) for x, y in self._pending],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "runs": [
                {
                    "name": r.name,
                    "cfg": r.sae.cfg.to_dict(),
                    "model": {k: v.cpu() for k, v in r.sae.state_dict().items()},
                    "optimizer": r.optimizer.state_dict(),
                    "optimizer_groups": group_names(r.sae, r.optimizer),
                    "tracker": r.tracker.state_dict(),
                    "generator": r.generator.get_state(),
                    "base_lr": r.base_lr,
                    "average": r.average.state_dict(),
                }
                for r in self.runs
            ],
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        path = Path(path) if path is not None else self.checkpoint_path()
        if path is None:
            return None
        state = self.strategy.checkpoint_state(self.state_dict, self.source)
        return save_checkpoint(path, state) if state is not None else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        runs = state["runs"]
        # read through from_dict: a checkpoint written before a field existed has that field's default
        saved, now = [_as_config_dict(r["cfg"]) for r in runs], [r.sae.cfg.to_dict() for r in self.runs]
        if saved != now:
            raise ConfigError(
                f"the checkpoint was written for different dictionary configs{_config_difference(saved, now)}; "
                "resume with the same configs (a default that changed between versions can be set to the checkpoint's value)."
            )
        saved_t = dict(state["train_config"])
        for key in (
            "batch_size",
            "total_tokens",
            "seed",
            "lr",
            "lr_warmup_steps",
            "lr_decay_fraction",
            "normalize",
            "tail_average",
        ):
            mine = getattr(self.tcfg, key)
            # a field the checkpoint predates is not compared (tail_average: the mean starts at the resume)
            if key in saved_t and saved_t[key] != mine:
                raise ConfigError(
                    f"the checkpoint was trained with {key}={saved_t[key]!r} but this run has {key}={mine!r}."
                )
        self.step_count, self.tokens = int(state["step"]), int(state["tokens"])
        self.source.load_state_dict(state["source"])
        self._pending = [(x, y) for x, y in state["pending"]]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        for run, saved in zip(self.runs, runs):
            run.sae.load_state_dict(saved["model"])
            load_optimizer_state(run.sae, run.optimizer, saved["optimizer"], saved.get("optimizer_groups"))
            run.tracker.load_state_dict(saved["tracker"])
            run.generator.set_state(saved["generator"])
            # the rate the run trained at: a default measured again (the data's spread) must not drift
            run.base_lr = float(saved.get("base_lr", run.base_lr))
            run.average.load_state_dict(saved.get("average"), self.device)
        self.metrics.truncate_after(self.step_count)

    def resume(self, path: str | Path | None = None) -> Trainer:
        """Restore the state of checkpoint ``path`` (default: ``out_dir/checkpoint.pt``)."""
        path = path if path is not None else self.checkpoint_path()
        if path is None:
            raise ConfigError("resume needs out_dir (where the checkpoint is) or a checkpoint path.")
        self.load_state_dict(self.strategy.load_state(path))
        return self

    # ------------------------------------------------------------------ outputs
    def describe(self) -> dict[str, Any]:
        return {
            "dictionaries": [c.to_dict() for c in self.cfgs],
            "names": self.names,
            "train": self.tcfg.to_dict(),
        }

    def dictionary_dir(self, i: int) -> Path:
        assert self.out_dir is not None
        return self.out_dir if len(self.runs) == 1 else self.out_dir / self.names[i]

    @torch.no_grad()
    def densities(self, rows: int = 1024) -> list[torch.Tensor] | None:
        """Each dictionary's latent firing densities [n_latents] (CPU) on a sample of the source,
        from its sparse codes, ``rows`` at a time; None when the source cannot sample."""
        sample = self.source.sample(INIT_SAMPLE)
        if sample is None:
            return None
        x = sample[0].to(self.device, torch.float32)
        out = []
        for run in self.runs:
            counts = torch.zeros(run.sae.n_latents, dtype=torch.long, device=self.device)
            for chunk in x.split(rows):
                vals, idx = run.sae.encode_sparse(chunk)
                counts += torch.bincount(idx[vals != 0], minlength=run.sae.n_latents)
            out.append((counts.float() / x.shape[0]).cpu())
        return out

    @torch.no_grad()
    def save_dictionaries(
        self, saes: list[SparseDictionary] | None = None, densities: list[torch.Tensor] | None = None
    ) -> list[Path]:
        """Write each dictionary folder (saekit.dictionaries.folder) with its last metrics and the latent
        firing densities on a sample (SAELens's sparsity.safetensors)."""
        from saekit.dictionaries.folder import save_dictionary

        saes = saes if saes is not None else [run.sae for run in self.runs]
        densities = densities if densities is not None else self.densities()
        last: dict[str, dict] = {r["dict"]: r for r in self.metrics.records}
        paths = []
        for i, (run, sae) in enumerate(zip(self.runs, saes)):
            metrics = {k: v for k, v in last.get(run.name, {}).items() if k != "dict"}
            extra = {"train": self.tcfg.to_dict(), "metrics": metrics}
            density = densities[i] if densities is not None else None
            paths.append(save_dictionary(sae, self.dictionary_dir(i), extra=extra, feature_density=density))
        return paths

    def _checkpoint_note(self) -> str:
        path = self.checkpoint_path()
        return f"; the last good checkpoint is {path}" if path is not None and path.exists() else ""

    def _on_bad_batch(self) -> None:
        """Before stopping on bad data, make sure the last good state is on disk."""
        if self.out_dir is not None and self.step_count > 0 and self.strategy.checkpoint_on_bad_data:
            self.save_checkpoint()


def _nonfinite(x: torch.Tensor, y: torch.Tensor | None) -> str | None:
    """'N row(s) of the inputs/targets' when a batch holds NaN or inf, else None."""
    for name, t in (("inputs", x), ("targets", y)):
        # A NaN or inf anywhere makes the sum NaN or inf: one reduction per batch instead of
        # isfinite's several passes; a sum that overflowed from finite values is checked in full.
        if t is None or not t.is_floating_point() or bool(torch.isfinite(t.sum())):
            continue
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).reshape(t.shape[0], -1).any(-1).sum())
            return f"{bad} row(s) of the {name}"
    return None


def group_lr_scale(group: dict, base_lr: float, steps: int) -> float:
    """A parameter group's learning rate as a multiple of the run's: its ``lr_scale``, raised so
    that its parameters can travel its ``min_travel`` over the run (Adam moves a parameter by
    about its rate per step, so base_lr·scale·steps must reach the distance; JumpReLU's thresholds
    must climb to about √λ whatever the width and the data's rate)."""
    scale = group.get("lr_scale", 1.0)
    travel = group.get("min_travel")
    if travel is not None and base_lr > 0 and steps > 0:
        scale = max(scale, travel / (base_lr * steps))
    return scale


def train(
    cfg: DictionaryConfig | list[DictionaryConfig],
    source: Any,
    tcfg: TrainConfig | None = None,
    *,
    resume: bool | str | Path = False,
    names: list[str] | None = None,
    progress: bool = True,
) -> SparseDictionary | list[SparseDictionary]:
    """Train one dictionary (or a sweep: a list of configs on the same batches).

    ``source``: a Tensor [N, d_in], a pair (X, Y) for transcoders, an ActivationCache or an
    ActivationStream. ``resume=True`` continues from ``tcfg.out_dir/checkpoint.pt`` (or from
    the checkpoint path given) so the final weights equal an uninterrupted run's.
    """
    trainer = Trainer(cfg, source, tcfg, names=names, progress=progress)
    if resume:
        trainer.resume(None if resume is True else resume)
    saes = trainer.fit()
    return saes[0] if isinstance(cfg, DictionaryConfig) else saes


def _config_difference(saved: list[dict | None], now: list[dict]) -> str:
    """' (dictionary i: field checkpoint value vs now value, ...)' for the first pair of configs that differ."""
    if len(saved) != len(now):
        return f" ({len(saved)} dictionaries in the checkpoint, {len(now)} now)"
    for i, (a, b) in enumerate(zip(saved, now)):
        if a is not None and a != b:
            fields = ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            return f" (dictionary {i}, checkpoint vs now: {fields})"
    return ""


def _as_config_dict(saved: dict[str, Any]) -> dict[str, Any] | None:
    """A checkpoint's dictionary config as today's DictionaryConfig writes it (None if unreadable)."""
    try:
        return DictionaryConfig.from_dict(saved).to_dict()
    except ConfigError:
        return None
