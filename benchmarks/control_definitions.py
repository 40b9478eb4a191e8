"""Which random control is token-level? Abstractness of baseline vs candidate random controls, per hookpoint.

Trains one tiny baseline model per initialisation (the control test's models: 1 layer, d_model 32,
400 steps of 8 on 3200 sequences), builds candidate random-weights controls, trains one small top-k SAE
(64 latents, k 8, 32k tokens) per model and hookpoint, and prints saekit's abstractness (median over alive
latents of 1 − R² from the current token id, split-half) of the SAE latents and of the raw activation,
on 512 held-out sequences. Controls (Heap et al. 2025, "Sparse autoencoders can interpret randomly
initialized transformers", use the step-0 model and re-randomised trained weights):

- ``step0``: the model at its initialisation (saekit's ``random`` variant today);
- ``rerand``: every trained parameter re-drawn from a normal with its own matrix's mean and std;
- ``rerand_keep_emb``: the same, but the trained token and positional embeddings kept;
- ``step0_keep_emb``: the initialisation with the trained embeddings copied in.

``--out-scale S`` is ``ModelConfig.out_init_scale``: the residual-output projections (W_O and W_out) of the
initialisation times S, for the baseline (before training) and for ``step0``. Model folders are kept in
``--work`` and reused.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/control_definitions.py --out-scale 1 0.1

Numbers in docs/comparing.md ("Random control: which definition") come from it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def hooks_of(n_layers: int) -> list[str]:
    """The four hookpoints of the last layer (and the first layer's MLP output in deeper models)."""
    last = [f"blocks.{n_layers - 1}.hook_{h}" for h in ("resid_pre", "attn_out", "mlp_out", "resid_post")]
    return (["blocks.0.hook_mlp_out"] if n_layers > 1 else []) + last

EMBEDDINGS = ("embed.W_E", "pos_embed.W_pos")


def rerandomised(model, seed: int, keep: tuple[str, ...] = ()) -> None:
    """Re-draw every parameter not in keep from N(its matrix's mean, its matrix's std), in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in keep:
                continue
            mean, std = p.mean(), (p.std() if p.numel() > 1 else torch.tensor(0.0))
            p.copy_(mean + std * torch.randn(p.shape, generator=gen))


def sae_abstractness(x: torch.Tensor, ids: torch.Tensor, seed: int) -> float:
    import saekit
    from saekit.config import DictionaryConfig, TrainConfig
    from saekit.evaluation.abstractness import abstractness

    cfg = DictionaryConfig(kind="topk", d_in=x.shape[1], n_latents=64, k=8)
    tcfg = TrainConfig(batch_size=64, total_tokens=32_000, lr=3e-3, lr_warmup_steps=2, log_every=10**9, seed=seed)
    sae = saekit.train(cfg, x, tcfg)
    with torch.no_grad():
        z = sae.encode(x)
    return abstractness(z, ids)["median_current"]


def candidate_controls(folder: Path, cfg, seed: int, names: list[str]) -> dict:
    """The trained baseline in folder and the random controls built from it or from cfg's initialisation."""
    from saekit.models import load_model
    from saekit.models.build import build_model, initialise, tl_config_dict

    def step0():
        return initialise(build_model(tl_config_dict(cfg.replace(seed=seed))), cfg)

    trained = load_model(folder).model
    models = {"baseline": trained, "step0": step0()}
    for name, keep in (("rerand", ()), ("rerand_keep_emb", EMBEDDINGS)):
        m = load_model(folder).model
        rerandomised(m, seed, keep)
        models[name] = m
    m = step0()
    m.load_state_dict({**m.state_dict(), **{k: v for k, v in trained.state_dict().items() if k in EMBEDDINGS}})
    models["step0_keep_emb"] = m
    return {k: v.eval() for k, v in models.items() if k in names}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out-scale", type=float, nargs="+", default=[1.0], help="ModelConfig.out_init_scale values")
    p.add_argument("--pos-emb", default="standard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-layers", type=int, default=1)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-ctx", type=int, default=32)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--train-docs", type=int, default=2)
    p.add_argument("--train-rows", type=int, default=3200)
    p.add_argument("--models", nargs="+", default=["baseline", "step0", "rerand", "rerand_keep_emb", "step0_keep_emb"])
    p.add_argument("--eval-seqs", type=int, default=512)
    p.add_argument("--work", type=Path, default=Path("/tmp/control_definitions"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from saekit.activations import read_activations
    from saekit.config import ModelConfig
    from saekit.data import default_tokenizer, load_corpus, pack_tokens
    from saekit.evaluation.abstractness import abstractness
    from saekit.models import train_model

    args = parse_args(argv)
    tok, n_ctx, hooks = default_tokenizer(), args.n_ctx, hooks_of(args.n_layers)
    train = pack_tokens(load_corpus("train")[: args.train_docs], tok, n_ctx, max_rows=args.train_rows)
    val = pack_tokens(load_corpus("validation")[:1], tok, n_ctx, max_rows=16)
    held = pack_tokens(load_corpus("validation"), tok, n_ctx, max_rows=args.eval_seqs)
    ids = held[:, 1:].reshape(-1)  # BOS positions left out, as in a comparison
    base_cfg = ModelConfig(n_layers=args.n_layers, d_model=args.d_model, n_heads=2 if args.d_model < 128 else 4,
                           d_mlp=4 * args.d_model, n_ctx=n_ctx, steps=args.steps, batch_size=args.batch, device="cpu",
                           positional_embedding=args.pos_emb, seed=args.seed, warmup_steps=min(50, args.steps // 4))  # fmt: skip
    print("| W_O, W_out init × | model | val loss | " + " | ".join(h[7:] for h in hooks) + " |")
    print("|---|---|---|" + "---|" * len(hooks))
    for scale in args.out_scale:
        t0, cfg = time.perf_counter(), base_cfg.replace(out_init_scale=scale)
        folder = args.work / f"baseline-L{args.n_layers}-d{args.d_model}-c{n_ctx}-t{args.steps}x{args.batch}-x{scale}-{args.pos_emb}-s{args.seed}"
        h = train_model(cfg, folder, tokenizer=tok, data=(train, val), progress=False)
        for name, model in candidate_controls(folder, cfg, args.seed + 100, args.models).items():
            with torch.no_grad():
                loss = float(model(val, return_type="loss"))
            acts = read_activations(model, held, hooks, progress=False)
            cells = []
            for hook in hooks:
                x = acts[hook][:, 1:].reshape(-1, acts[hook].shape[-1]).float()
                raw = abstractness(x, ids)["median_current"]
                cells.append(f"{sae_abstractness(x, ids, args.seed):.2f} ({raw:.2f})")
            print(f"| {scale} | {name} | {loss:.2f} | " + " | ".join(cells) + " |", flush=True)
        print(f"(x{scale}: {time.perf_counter() - t0:.0f} s, baseline val loss {h.info['val_loss']:.3f})", flush=True)


if __name__ == "__main__":
    main()
