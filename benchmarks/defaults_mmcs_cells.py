"""Feature recovery (MMCS) at the defaults on issue 21's synthetic row (session 7, helper mmc7):
one ``Trainer`` sweep (the same batches for all) of top-k dictionaries whose cells differ in the
optimiser's schedule, which a sweep otherwise shares: a multiple of the default rate (``mult``) or a
rate of its own (``lr``),
the rate multiple of one parameter (``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``; W_dec's and b_dec's replace their ``W_dec_lr_scale`` and ``b_dec_lr_scale``), their own warm-up (``warmup`` steps) and decay fraction (``decay``), Adam's ``betas``, the decoder's
and encoder's rate as a multiple of the rest (``dec``, ``enc``), W_dec's multiple falling to
``W_dec_to`` over the run, the dead latents' rows moved ``dead_mult`` times as far each step (session 9),
k annealed from ``k_from`` over the first ``k_decay`` of the run, W_dec's multiple steered by the
tracker's dead fraction (``dead_ctl``: [target, gain per step, largest]; session 10), and
DictionaryConfig overrides (any other key; SAELens's free decoder norms: ``"decoder_norm": "free"``). Each line also carries the tracker's dead fraction at 25
points of the run (``dead_trace``). Rows as in benchmarks/defaults_lr_cells.py (512 latents, k 8, batch 4096, 1M
tokens = 244 steps); held-out FVU, L0, dead fraction on 20k held-out rows, MMCS, matched > 0.9.

The second argument holds TrainConfig overrides shared by the sweep ('{"total_tokens": 10000000}':
2441 steps over the same 1M synthetic rows, ten epochs) and the row's shape (issue 21's own row:
'{"n_latents": 4096, "k": 32, "d": 128, "features": 1024}').

Run:  python benchmarks/defaults_mmcs_cells.py synthetic '{}' '{"mult": 1}' '{"mult": 1, "decay": 0, "warmup": 1}'
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from defaults_dead_cells import held_out_scores, sweep  # noqa: E402

from saekit import TrainConfig  # noqa: E402
from saekit.training.schedule import lr_factor  # noqa: E402

PARAMS = ("W_enc", "W_dec", "b_enc", "b_dec")  # a cell's rate multiple of one parameter: {"W_enc": 2}
SCHEDULE_KEYS = ("lr", "mult", "warmup", "decay", "betas", "dec", "enc", "W_dec_to", "dead_mult", "k_from", "k_decay", "dead_ctl", *PARAMS)


def annealed_k(cell: dict, k: int, i: int, steps: int) -> int:
    """k at step i when the cell gives ``k_from``: linear from k_from to k over the first ``k_decay``
    of the run (sparsify's experimental ``k_decay_steps``, which starts at 10x the input width)."""
    end = max(1, round(cell.get("k_decay", 0.5) * steps))
    return k if i >= end else round(cell["k_from"] + (k - cell["k_from"]) * i / end)


def w_dec_scale(cell: dict, i: int, steps: int) -> float | None:
    """W_dec's rate multiple at step i when the cell gives ``W_dec_to``: from ``W_dec`` at the start to
    ``W_dec_to`` at the end as 1/√(a + b·i), the way a SAELens decoder row's turning rate falls as its
    norm grows (its squared norm grows about linearly with the steps)."""
    if "W_dec_to" not in cell:
        return None
    a, end = 1 / cell.get("W_dec", 1.0) ** 2, 1 / cell["W_dec_to"] ** 2
    return (a + (end - a) * i / max(1, steps - 1)) ** -0.5


def w_dec_group(run) -> dict:
    """W_dec's Adam group (regroup gives every parameter a group of its own)."""
    return next(g for g in run.optimizer.param_groups if g["params"][0] is run.sae.W_dec)


def controlled_scale(run, ctl: list) -> float:
    """W_dec's multiple raised by (1 + gain) each step while more than ``target`` of the latents are
    dead (the tracker's window), lowered while fewer than half of it are, within [its default, top]."""
    target, gain, top = ctl
    m, dead = w_dec_group(run)["lr_scale"], run.tracker.dead_fraction()
    if dead > target:
        m *= 1 + gain
    elif dead < target / 2:
        m /= 1 + gain
    return min(top, max(run.sae.cfg.W_dec_lr_scale, m))


@torch.no_grad()
def stretch_step(sae, dead: torch.Tensor, W_dec: torch.Tensor, W_enc: torch.Tensor, mult: float) -> None:
    """The dead latents' decoder rows and encoder columns moved ``mult`` times as far as the step took them."""
    sae.W_dec[dead] = W_dec[dead] + mult * (sae.W_dec[dead] - W_dec[dead])
    sae.W_enc[:, dead] = W_enc[:, dead] + mult * (sae.W_enc[:, dead] - W_enc[:, dead])
    sae.after_step()


def regroup(run, cell: dict, tcfg: TrainConfig) -> None:
    """A fresh Adam with one group per parameter: the dictionary's own group options (its
    ``param_groups``: W_dec's, b_dec's, b_enc's multiples, JumpReLU's thresholds), the cell's rate
    multiples over them (``dec``, ``enc``, PARAMS) and the cell's betas."""
    sae = run.sae
    name_of = {id(p): n for n, p in sae.named_parameters()}
    opts = {name_of[id(p)]: {k: v for k, v in g.items() if k != "params"} for g in sae.param_groups() for p in g["params"]}
    over = {"enc": "W_enc", "dec": "W_dec", **{p: p for p in PARAMS}}
    for key, name in over.items():
        if key in cell and name in opts:  # gated's encoder bias is b_gate
            opts[name]["lr_scale"] = cell[key]
    groups = [{"params": [p], **opts[name]} for name, p in sae.named_parameters()]
    run.optimizer = torch.optim.Adam(groups, lr=run.base_lr, betas=tuple(cell.get("betas", tcfg.betas())))


def main() -> None:
    torch.set_num_threads(1)
    data, shape, tk, cells, tcfg, tr, Xv, feats = sweep(sys.argv[1:], SCHEDULE_KEYS)
    base = []
    for run, c in zip(tr.runs, cells):
        run.base_lr = c["lr"] if "lr" in c else run.base_lr * c.get("mult", 1.0)
        base.append(run.base_lr)
        regroup(run, c, tcfg)
    steps, warm, dec = tr.total_steps, tcfg.warmup_steps(), tcfg.lr_decay_fraction
    scale_trace: dict[int, list] = {j: [] for j in range(len(cells))}  # dead_ctl cells' W_dec multiple
    dead_trace: dict[int, list] = {j: [] for j in range(len(cells))}  # every cell's tracker dead fraction
    t0 = time.perf_counter()
    for i in range(steps):
        shared = lr_factor(i, steps, warm, dec)
        for j, (run, b, c) in enumerate(zip(tr.runs, base, cells)):  # the trainer multiplies base_lr by the shared factor
            own = lr_factor(i, steps, c.get("warmup", warm), c.get("decay", dec))
            run.base_lr = b * own / shared
            if "k_from" in c:
                run.sae.cfg.k = annealed_k(c, shape.get("k", 8), i, steps)
            scale = w_dec_scale(c, i, steps)
            if "dead_ctl" in c:  # [target dead fraction, gain per step, largest multiple]
                scale = controlled_scale(run, c["dead_ctl"])
                scale_trace[j].append(round(scale, 2))
            if scale is not None:
                w_dec_group(run)["lr_scale"] = scale
        x, y = tr.next_batch()
        stretched = [(run, c["dead_mult"], run.tracker.dead_mask().clone(), run.sae.W_dec.detach().clone(),
                      run.sae.W_enc.detach().clone()) for run, c in zip(tr.runs, cells) if "dead_mult" in c]  # fmt: skip
        tr.step(x, y)
        if i % max(1, steps // 24) == 0 or i == steps - 1:  # the tracker's dead fraction over the run
            for j, run in enumerate(tr.runs):
                dead_trace[j].append(round(run.tracker.dead_fraction(), 3))
        for run, mult, dead, W_dec, W_enc in stretched:  # dead latents' rows step dead_mult times further
            if bool(dead.any()):
                stretch_step(run.sae, dead, W_dec, W_enc, mult)
    secs = time.perf_counter() - t0
    for j, (c, run, lr) in enumerate(zip(cells, tr.runs, base)):
        trace = scale_trace[j][:: max(1, steps // 12)]
        print(json.dumps({"data": data, **shape, **tk, **c, "lr": lr, "trace": trace, "dead_trace": dead_trace[j], **held_out_scores(run.sae, Xv, feats), "secs": secs}), flush=True)


if __name__ == "__main__":
    main()
