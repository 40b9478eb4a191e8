"""How well do dictionaries on a tiny planted-language model recover the planted labels?

Trains a baseline and a random-control model on `planted:NAME`, a top-k SAE per hookpoint (and
dictionary seed) on each, and prints per hookpoint the label recovery by kind (labels with best
F1 >= 0.8, mean best F1, matched MCC), the same scores on row-shuffled codes (chance), the
worst-recovered token-level labels and the seed agreement (Hungarian shared fraction at cos > 0.7).

    nice python benchmarks/planted_recovery.py --spec small --layers 1 --n-ctx 32 --steps 600 --lr 1e-2 \
        --weight-decay 1.0 --k 4 --sae-rows 512 --hooks hook_embed blocks.0.hook_resid_post --width 1024 256
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from saekit.config import DictionaryConfig, ModelConfig, TrainConfig
from saekit.data.planted import planted_language
from saekit.evaluation.ground_truth import label_recovery, recovery_summary
from saekit.evaluation.matching import seed_consistency
from saekit.evaluation.planted_scores import planted_activations
from saekit.models.train import dataset_tokens, train_model
from saekit.training import train


def fmt(s: dict) -> str:
    return " | ".join(
        f"{kind}: rec {v['recovered_fraction']:.2f} f1 {v['mean_best_f1']:.2f} mcc {v['mean_matched_mcc']:.2f}"
        for kind, v in s.items()
    )


def why_missed(z: torch.Tensor, y: torch.Tensor, lang, name: str) -> str:
    """Why a label's best latent falls short: it also fires on another label's tokens (merged with the
    label it fires on most besides), or it misses some of the label's tokens (split over several latents)."""
    i = lang.label_names.index(name)
    fires, has = z[:, int(label_recovery(z, y)["best_latent"][i])] > 0, y[:, i]
    both = float((fires & has).sum())
    precision, recall = both / max(1.0, float(fires.sum())), both / max(1.0, float(has.sum()))
    if precision >= recall:
        return f"split: recall {recall:.2f}"
    others = y[fires][:, ~lang.is_contextual].sum(0).float()
    others[int((~lang.is_contextual).nonzero()[:, 0].tolist().index(i))] = 0
    other = [n for n, c in zip(lang.label_names, lang.is_contextual) if not c][int(others.argmax())]
    return f"merged with {other}: precision {precision:.2f}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="small")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--n-ctx", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--hooks", nargs="+", default=["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
    p.add_argument("--width", type=int, nargs="+", default=[256], help="one width, or one per hook")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--sae-rows", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--sae-batch", type=int, default=256)
    p.add_argument("--sae-lr", type=float, default=4e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variants", nargs="+", default=["baseline", "random"])
    p.add_argument("--worst", type=int, default=6)
    a = p.parse_args()
    torch.manual_seed(0)
    lang = planted_language(a.spec)
    print(f"spec {a.spec}: vocabulary {lang.vocab_size}, {len(lang.label_names)} labels "
          f"({int((~lang.is_contextual).sum())} token-level)")
    base = ModelConfig(n_layers=a.layers, d_model=a.d_model, n_heads=4, d_mlp=4 * a.d_model, n_ctx=a.n_ctx,
                       vocab_size=lang.vocab_size, steps=a.steps, warmup_steps=30, lr=a.lr, weight_decay=a.weight_decay, device="cpu")
    tok, data = dataset_tokens(base, f"planted:{a.spec}")
    tr_tokens, tr_labels = lang.rows(a.sae_rows, a.n_ctx, seed=1)
    ev_tokens, ev_labels = lang.rows(256, a.n_ctx, seed=12345)
    with tempfile.TemporaryDirectory() as tmp:
        for variant in a.variants:
            t0, c0 = time.perf_counter(), time.process_time()
            h = train_model(base.replace(variant=variant), f"{tmp}/{variant}", tokenizer=tok, data=data, progress=False)
            print(f"\n== {variant}: val loss {h.info['val_loss']:.3f} (ln V = {torch.log(torch.tensor(float(lang.vocab_size))):.2f}),"
                  f" {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU")
            for hook, width in zip(a.hooks, a.width * len(a.hooks) if len(a.width) == 1 else a.width):
                x_tr, _ = planted_activations(h.model, tr_tokens, tr_labels, hook)
                x_ev, y_ev = planted_activations(h.model, ev_tokens, ev_labels, hook)
                cfg = DictionaryConfig(kind="topk", d_in=a.d_model, n_latents=width, k=a.k, hook_name=hook)
                tcfg = TrainConfig(batch_size=a.sae_batch, total_tokens=a.epochs * len(x_tr), lr=a.sae_lr,
                                   lr_warmup_steps=10, device="cpu")
                t0, c0 = time.perf_counter(), time.process_time()
                decs = []
                for seed in a.seeds:
                    sae = train(cfg, x_tr, tcfg.replace(seed=seed), progress=False).eval()
                    with torch.no_grad():
                        z = sae.encode(x_ev)
                    decs.append(sae.W_dec.detach())
                    print(f"  {hook} w{width} seed {seed}: {fmt(recovery_summary(z, y_ev, lang.is_contextual))}")
                    if seed == a.seeds[0]:
                        chance = recovery_summary(z[torch.randperm(len(z))], y_ev, lang.is_contextual)
                        print(f"  {hook} chance : {fmt(chance)}")
                        rec = label_recovery(z, y_ev)
                        tl = [(float(rec['best_f1'][i]), lang.label_names[i]) for i in range(len(lang.label_names))
                              if not lang.is_contextual[i] and y_ev[:, i].any()]
                        ctx = [(float(rec['best_f1'][i]), lang.label_names[i]) for i in range(len(lang.label_names))
                               if lang.is_contextual[i] and y_ev[:, i].any()]
                        print("    worst token-level:", ", ".join(f"{n} {f:.2f} ({why_missed(z, y_ev, lang, n)})"
                                                              for f, n in sorted(tl)[: a.worst]))
                        print("    best contextual:", ", ".join(f"{n} {f:.2f}" for f, n in sorted(ctx)[::-1][: a.worst]))
                agree = seed_consistency(decs)["message"] if len(decs) > 1 else "one seed"
                print(f"  {hook}: {agree}; fire rate {float((z > 0).float().mean()):.3f};"
                      f" {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU")


if __name__ == "__main__":
    main()
