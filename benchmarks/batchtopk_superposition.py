"""BatchTopK against TopK under heavy superposition, in saekit and in SAELens (a reference check).

Planted rows of tests/synthetic.py (``--d``-dim rows of 256 unit features, ~5 active), a crowded
dictionary (1024 latents, k 8, batch 256). saekit trains each kind at its defaults; SAELens's
``TopKTrainingSAE`` and ``BatchTopKTrainingSAE`` (Adam, grad-norm clip 1, its AuxK) train in SAELens's
venv on the same rows and batch order at each ``--saelens-lrs``. Prints MMCS (planted features
against decoder rows) for every run: is a low BatchTopK figure saekit's or the algorithm's?

Run:  PYTHONPATH=.:tests python benchmarks/batchtopk_superposition.py --steps 500 \
          --saelens-python benchmarks/.venvs/saelens/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import feature_recovery, planted_rows  # noqa: E402

from saekit.config import DictionaryConfig, TrainConfig  # noqa: E402
from saekit.training import TensorSource, Trainer  # noqa: E402

N, K, B = 1024, 8, 256

SAELENS = r"""
import json, sys, torch
from safetensors.torch import load_file
torch.set_num_threads(1); torch.manual_seed(0)
d = load_file(sys.argv[1]); X, perm, feats = d["x"], d["perm"], d["feats"]
kind, lr, steps, n, k, B = sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
if kind == "batchtopk":
    from sae_lens import BatchTopKTrainingSAE as C, BatchTopKTrainingSAEConfig as Cfg
else:
    from sae_lens import TopKTrainingSAE as C, TopKTrainingSAEConfig as Cfg
from sae_lens.saes.sae import TrainStepInput
sae = C(Cfg(d_in=X.shape[1], d_sae=n, k=k, device="cpu", dtype="float32"))
opt = torch.optim.Adam(sae.parameters(), lr=lr)
since = torch.zeros(n, dtype=torch.long)
for i in range(steps):
    j = (i * B) % X.shape[0]
    x = X[perm[j:j + B]]
    inp = TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=since > 48, n_training_steps=i, is_logging_step=False)
    out = sae.training_forward_pass(inp)
    opt.zero_grad(); out.loss.backward(); torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0); opt.step()
    with torch.no_grad():
        since += 1
        since[(out.feature_acts > 0).any(0)] = 0
W = sae.W_dec.detach(); W = W / W.norm(dim=-1, keepdim=True)
print(json.dumps({"mmcs": float((feats @ W.T).max(1).values.mean())}))
"""


def saekit_mmcs(kind: str, X: torch.Tensor, perm: torch.Tensor, feats: torch.Tensor, steps: int) -> float:
    tcfg = TrainConfig(batch_size=B, total_tokens=B * steps, seed=0, device="cpu", log_every=0)
    trainer = Trainer(DictionaryConfig(kind=kind, d_in=X.shape[1], n_latents=N, k=K), TensorSource(X[perm], shuffle=False),
                      tcfg, progress=False)
    return feature_recovery(feats, trainer.fit()[0].W_dec.detach())[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--saelens-lrs", type=float, nargs="*", default=[1e-3, 3.3e-3, 1e-2])
    ap.add_argument("--saelens-python", default=str(ROOT / "benchmarks" / ".venvs" / "saelens" / "bin" / "python"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    X, _, feats = planted_rows(200_000, 1, args.d, 256, 5.0)
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))
    rows = [{"framework": "saekit", "kind": kind, "lr": "default", "mmcs": saekit_mmcs(kind, X, perm, feats, args.steps)}
            for kind in ("topk", "batchtopk")]
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "data.safetensors", Path(tmp) / "run.py"
        save_file({"x": X.contiguous(), "perm": perm.contiguous(), "feats": feats.contiguous()}, str(data))
        script.write_text(SAELENS)
        for kind in ("topk", "batchtopk"):
            for lr in args.saelens_lrs:
                cmd = [args.saelens_python, str(script), str(data), kind, str(lr), str(args.steps), str(N), str(K), str(B)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                rows.append({"framework": "SAELens", "kind": kind, "lr": lr, **json.loads(out)})
    for r in rows:
        print(json.dumps({**r, "d": args.d, "steps": args.steps}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
