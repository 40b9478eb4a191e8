"""Why the random control is not `worse` on abstractness: per hookpoint, what predicts the SAE latents.

Reads a finished ``benchmarks/control_verdict.py`` folder (``OUT/models`` and the seed-0 SAEs of every
``--hooks`` config in ``OUT/compare``) and prints, per hookpoint and model, the median over alive latents of:

- ``split``: saekit's abstractness (``saekit.evaluation.abstractness``: 1 − R² from the current token id,
  per-id means fitted on one half of the held-out tokens, scored on the other, clipped to [0, 1]);
- ``tok``, ``pos``, ``tok+pos``: 1 − adjusted R² of a least-squares fit on all held-out tokens from the
  current token id, from the position, and from both (additive, by backfitting). The adjusted R² removes
  the finite-sample inflation of a fit with one mean per key, so these do not drift with the amount of
  held-out text as ``split`` does (rare token ids make ``split`` read 1 for most latents);
- ``density``: the median firing rate.

    PYTHONPATH=. nice -n 10 python benchmarks/control_abstractness.py --out /tmp/control --eval-seqs 256 2048

Numbers in docs/comparing.md ("Checking the verdicts") come from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="a control_verdict.py --out folder")
    p.add_argument("--eval-seqs", type=int, nargs="+", default=[256])
    p.add_argument("--iters", type=int, default=8, help="backfitting sweeps of the additive fit")
    return p.parse_args(argv)


def one_minus_adj_r2(z: torch.Tensor, keys: list[torch.Tensor], iters: int) -> np.ndarray:
    """Per column of z [N, L]: 1 − adjusted R² of the additive fit of one mean per key value per key set."""
    z = z.double()
    n, mu = z.shape[0], z.mean(0)
    resid = z - mu
    invs = [torch.unique(k, return_inverse=True)[1] for k in keys]
    sizes = [int(i.max()) + 1 for i in invs]
    effects = [torch.zeros(k, z.shape[1], dtype=torch.float64) for k in sizes]
    for _ in range(iters if len(keys) > 1 else 1):
        for j, (inv, k) in enumerate(zip(invs, sizes)):
            part = resid + effects[j][inv]
            sums = torch.zeros(k, z.shape[1], dtype=torch.float64).index_add_(0, inv, part)
            effects[j] = sums / torch.bincount(inv, minlength=k).double()[:, None]
            resid = part - effects[j][inv]
    sst = ((z - mu) ** 2).sum(0)
    df_model = sum(sizes) - len(sizes)
    out = (((resid**2).sum(0) / (n - 1 - df_model)) / (sst / (n - 1))).clamp(0, 1).numpy()
    out[sst.numpy() < 1e-12] = np.nan
    return out


def main(argv: list[str] | None = None) -> None:
    import saekit
    from saekit.activations import read_activations
    from saekit.data import load_corpus, pack_tokens
    from saekit.evaluation.abstractness import abstractness
    from saekit.models import load_model

    args = parse_args(argv)
    models = sorted(p for p in (args.out / "models").iterdir() if (p / "model.safetensors").exists())
    hooks = sorted(p.name for p in (args.out / "compare" / f"{models[0].name[:-1]}-s{models[0].name[-1]}").iterdir())
    med = lambda a: float(np.median(a[~np.isnan(a)]))
    for n_eval in args.eval_seqs:
        for hook in hooks:
            for folder in models:
                h = load_model(folder)
                n_ctx = int(h.model.cfg.n_ctx)
                toks = pack_tokens(load_corpus("validation"), h.tokenizer, n_ctx, max_rows=n_eval)
                x = read_activations(h, toks, [hook], progress=False)[hook][:, 1:]  # BOS positions left out
                sae = saekit.load(args.out / "compare" / f"{folder.name[:-1]}-s{folder.name[-1]}" / hook / "seed0")
                with torch.no_grad():
                    z = sae.encode(x.reshape(-1, x.shape[-1]).float())
                tok = toks[:, 1:].reshape(-1)
                pos = torch.arange(1, n_ctx).repeat(toks.shape[0])
                split = abstractness(z, tok)["median_current"]
                fits = {name: med(one_minus_adj_r2(z, keys, args.iters))
                        for name, keys in (("tok", [tok]), ("pos", [pos]), ("tok+pos", [tok, pos]))}  # fmt: skip
                dens = (z > 0).float().mean(0).numpy()
                print(f"{toks.shape[0]}x{n_ctx - 1} {hook} {folder.name}: split {split:.3f} "
                      + " ".join(f"{k} {v:.3f}" for k, v in fits.items())
                      + f" density {np.median(dens[dens > 0]):.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
