"""saekit's training loop against sparsify's step, timed side by side in ONE process on the same
batches, interleaved in chunks of steps (so a loaded machine slows every contender alike):
defaults_vs_peers.py's rows (top-k, k = 8, batch 4096, saekit at its defaults, sparsify's step
from peer_steps.py with Signum and with Adam).

Contenders: ``saekit`` (today's loop), ``saekit dense AuxK`` (the loop before session 5: AuxK
through the dense pre-activations and a dense encoder backward whenever a latent is dead) and
the two sparsify optimisers. Each trains the whole run, ``--chunk`` steps at a turn.

Runs in sparsify's venv (torch and sparsify there; saekit from this checkout):

    PYTHONPATH=. <sparsify venv>/bin/python benchmarks/loop_speed_interleaved.py \
        --cache benchmarks/out/lm/train --tokens 1000000

``--baseline DIR [DIR ...]`` adds ``saekit (DIR's name)`` for each: the loop of another checkout (a
folder holding its saekit/ and kernels/, e.g. ``git archive <commit> saekit kernels | tar -x -C
DIR``), imported before this checkout's saekit and trained in the same turns, so a change's
speed-up is measured side by side too. ``--contenders`` keeps only the named loops.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _saekit_kernels(root: Path = ROOT) -> None:
    """saekit.kernels is mapped from kernels/ by the package's install; outside its venv, load it
    from the checkout ``root`` under the same name."""
    try:
        import saekit.kernels  # noqa: F401
    except ModuleNotFoundError:
        spec = importlib.util.spec_from_file_location(
            "saekit.kernels", root / "kernels" / "__init__.py", submodule_search_locations=[str(root / "kernels")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["saekit.kernels"] = module
        spec.loader.exec_module(module)


def _forget_saekit() -> None:
    """Drop every imported saekit module: the next import reads the checkout first on sys.path
    (objects built before keep the modules they were built with)."""
    for name in [m for m in sys.modules if m == "saekit" or m.startswith("saekit.")]:
        del sys.modules[name]


def baseline_loop(root: Path, *shape, seed: int = 0) -> SaekitLoop:
    """``SaekitLoop`` built with the saekit of the checkout ``root``, then this checkout's saekit
    restored for the other contenders."""
    _forget_saekit()
    sys.path.insert(0, str(root))
    try:
        _saekit_kernels(root)
        loop = SaekitLoop(*shape, dense_auxk=False, seed=seed)
        if not sys.modules["saekit"].__file__.startswith(str(root)):
            raise SystemExit(f"--baseline {root}: saekit was imported from {sys.modules['saekit'].__file__}")
    finally:
        sys.path.remove(str(root))
        _forget_saekit()
    _saekit_kernels()
    return loop


class SaekitLoop:
    def __init__(self, X, n, k, batch, steps, dense_auxk: bool, seed: int = 0):
        from saekit.config import DictionaryConfig, TrainConfig
        from saekit.training import TensorSource, Trainer

        cfg = DictionaryConfig(kind="topk", d_in=X.shape[1], n_latents=n, k=k)
        tcfg = TrainConfig(batch_size=batch, total_tokens=batch * steps, device="cpu", log_every=0, seed=seed)
        self.tr = Trainer(cfg, TensorSource(X, shuffle=False), tcfg, progress=False)
        self.dense_auxk = dense_auxk

    def step(self, _i: int) -> None:
        run = self.tr.runs[0]
        if self.dense_auxk:  # the path before session 5: dense whenever AuxK has dead latents
            run.sae.fused_encode = not bool(run.tracker.dead_mask().any())
        x, y = self.tr.next_batch()
        self.tr.step(x, y)

    def evaluate(self, Xv):
        sae = self.tr.runs[0].sae
        with torch.no_grad():
            return sae(Xv), float((sae.encode(Xv) != 0).any(0).logical_not().float().mean())


class SparsifyLoop:
    def __init__(self, X, n, k, batch, steps, optimizer: str, dead_tokens: int):
        import peer_steps

        lr = (5e-3 if optimizer == "signum" else 2e-4) / (n / 2**14) ** 0.5
        self.m = peer_steps.SparsifyTopK(X.shape[1], n, k, lr, optimizer=optimizer, dead_tokens=dead_tokens)
        self.X, self.B, self.lr, self.warm = X, batch, lr, max(1, min(1000, steps // 10))

    def step(self, i: int) -> None:
        j = (i * self.B) % self.X.shape[0]
        x = self.X[j : j + self.B]
        if x.shape[0] < self.B:
            x = torch.cat([x, self.X[: self.B - x.shape[0]]])
        self.m.set_lr(self.lr * min(1.0, (i + 1) / self.warm))
        self.m.step(x)

    def evaluate(self, Xv):
        z, xhat, _ = self.m.evaluate(Xv)
        return xhat, float((z != 0).any(0).logical_not().float().mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True, help="`saekit cache` folder (training rows)")
    ap.add_argument("--val-cache", default=None, help="held-out rows for FVU (default: the last 20k training rows)")
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n-latents", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=10, help="steps per turn")
    ap.add_argument("--dead-tokens", type=int, default=1_000_000, help="sparsify's dead window (as defaults_vs_peers.py)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--baseline", nargs="+", default=[], help="other checkouts' folders: their saekit loops as more contenders")
    ap.add_argument("--contenders", nargs="+", default=None, help="only these loops (names as in the output)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    baselines = [Path(b).resolve() for b in args.baseline]  # built below, after the rows are read
    _saekit_kernels()
    from saekit.activations import ActivationCache

    X = ActivationCache(args.cache).read_all().float()
    Xv = ActivationCache(args.val_cache).read_all().float()[:20_000] if args.val_cache else X[-20_000:]
    X = X[torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))]
    steps = args.tokens // args.batch
    shape = (X, args.n_latents, args.k, args.batch, steps)
    makers = {f"saekit ({root.name})": (lambda root=root: baseline_loop(root, *shape)) for root in baselines}
    makers.update({
        "saekit": lambda: SaekitLoop(*shape, dense_auxk=False),
        "saekit dense AuxK": lambda: SaekitLoop(*shape, dense_auxk=True),
        "sparsify Signum": lambda: SparsifyLoop(*shape, "signum", args.dead_tokens),
        "sparsify Adam": lambda: SparsifyLoop(*shape, "adam", args.dead_tokens),
    })
    keep = args.contenders or list(makers)
    unknown = set(keep) - set(makers)
    if unknown:
        raise SystemExit(f"--contenders: unknown {sorted(unknown)}; the loops are {list(makers)}")
    loops = {name: make() for name, make in makers.items() if name in keep}
    secs = dict.fromkeys(loops, 0.0)
    t_start, load0 = time.time(), os.getloadavg()[0]
    for s0 in range(0, steps, args.chunk):
        for name, loop in loops.items():
            t0 = time.perf_counter()
            for i in range(s0, min(steps, s0 + args.chunk)):
                loop.step(i)
            secs[name] += time.perf_counter() - t0
        print(f"step {min(steps, s0 + args.chunk)}/{steps} " + " ".join(f"{k}: {v:.0f}s" for k, v in secs.items()),
              file=sys.stderr, flush=True)
    rows = []
    for name, loop in loops.items():
        xhat, dead = loop.evaluate(Xv)
        fvu = float((xhat - Xv).pow(2).sum() / (Xv - Xv.mean(0)).pow(2).sum())
        rows.append({"run": name, "tokens_per_s": steps * args.batch / secs[name], "train_s": secs[name],
                     "fvu": fvu, "dead_fraction": dead})
    fastest_peer = max((r["tokens_per_s"] for r in rows if r["run"].startswith("sparsify")), default=float("nan"))
    for r in rows:
        r["vs_fastest_sparsify"] = r["tokens_per_s"] / fastest_peer
        print(json.dumps(r), flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_start)), "load_average": [load0, os.getloadavg()[0]],
              "torch": torch.__version__, "threads": args.threads, "settings": vars(args), "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
