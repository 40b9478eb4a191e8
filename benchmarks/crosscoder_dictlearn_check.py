"""Does dictionary_learning's own crosscoder class read saekit's export and compute the same thing?

Stage 1 (saekit's venv): train small relu and batchtopk crosscoders on planted two-model data,
one with equal activation scales and one with a different scale per source, export each with
``saekit.io.crosscoder.export_dictionary_learning``, and write the inputs and saekit's outputs
(reconstruction and codes) to safetensors.

Stage 2 (the peer's venv, run by stage 1 as a subprocess): load every export with
``CrossCoder.from_pretrained`` / ``BatchTopKCrossCoder.from_pretrained`` of dictionary_learning's
crosscoder fork and compare its forward and codes with saekit's on the same inputs.

The PyPI package ``dictionary-learning`` (0.1.0) has no crosscoder class, so stage 2 imports the
fork from a source checkout (science-of-finetuning/crosscoder_learning, the package folder
``dictionary_learning/``), given with --fork; its dependencies come from the peer venv
(benchmarks/.venvs/dictlearn: torch 2.13 CPU + ``pip install dictionary-learning``).

    python benchmarks/crosscoder_dictlearn_check.py --fork /path/to/crosscoder_learning \
        --peer-python benchmarks/.venvs/dictlearn/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {  # name: (kind, per-source activation scales or None for the trained ones)
    "relu": ("relu", None),
    "batchtopk": ("batchtopk", None),
    "batchtopk_unit_scale": ("batchtopk", (1.0, 1.0)),
}


def stage_saekit(work: Path) -> None:
    import torch
    from safetensors.torch import save_file

    import saekit
    from saekit.io.crosscoder import export_dictionary_learning

    gen = torch.Generator().manual_seed(0)
    n, f, d = 6000, 24, 16
    dirs = torch.nn.functional.normalize(torch.randn(2, f, d, generator=gen), dim=-1)
    acts = (torch.rand(n, f, generator=gen) < 0.1) * (torch.rand(n, f, generator=gen) + 0.5)
    keep_b = (torch.arange(f) % 5 != 0).float()  # every fifth feature only in A
    data = {"base": acts @ dirs[0] + 0.3, "act_l1": 3.0 * (acts * keep_b) @ dirs[1]}  # different scales and offsets
    x = torch.stack([data["base"][:512], data["act_l1"][:512]], dim=1)
    tcfg = saekit.TrainConfig(batch_size=256, total_tokens=60_000, lr=3e-3, normalize=True, device="cpu", log_every=0)
    tensors = {"x": x}
    for name, (kind, scales) in CASES.items():
        cfg = saekit.DictionaryConfig(
            kind=kind, d_in=d, n_latents=48, k=3 if kind != "relu" else None, n_sources=2,
            **({"sparsity_coef": 1.0} if kind == "relu" else {}),
        )  # fmt: skip
        cc = saekit.train(cfg, data, tcfg, progress=False).eval()
        if scales is not None:
            with torch.no_grad():
                cc.act_scale.copy_(torch.tensor(scales)[:, None])
        print(f"{name}: act_scale {cc.act_scale.reshape(-1).tolist()}")
        export_dictionary_learning(cc, work / name)
        with torch.no_grad():
            z = cc.encode(x)
            tensors[f"{name}.x_hat"] = cc(x).contiguous()
            tensors[f"{name}.z"] = z.contiguous()
    save_file(tensors, str(work / "saekit_outputs.safetensors"))


def stage_peer(work: Path, fork: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(fork))
    from dictionary_learning.dictionary import BatchTopKCrossCoder, CrossCoder

    ref = load_file(str(work / "saekit_outputs.safetensors"))
    x = ref["x"]
    out = {"torch": torch.__version__}
    for name, (kind, _) in CASES.items():
        cls = BatchTopKCrossCoder if kind == "batchtopk" else CrossCoder
        cc = cls.from_pretrained(str(work / name / "ae.pt"))
        with torch.no_grad():
            x_hat = cc(x)
            f = cc.encode(x)  # batchtopk: use_threshold=True (inference), as saekit's to_inference()
        diff = (x_hat - ref[f"{name}.x_hat"]).abs()
        scale = ref[f"{name}.x_hat"].abs().max()
        same_active = bool(torch.equal(f > 0, ref[f"{name}.z"] > 0))
        out[name] = {
            "class": cls.__name__,
            "max_abs_diff_x_hat": float(diff.max()),
            "max_rel_diff_x_hat": float(diff.max() / scale),
            "max_abs_diff_codes": float((f - ref[f"{name}.z"]).abs().max()),
            "same_active_latents": same_active,
            "l0": float((f > 0).float().sum(-1).mean()),
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fork", type=Path, required=True, help="checkout of the dictionary_learning crosscoder fork")
    p.add_argument("--peer-python", default="benchmarks/.venvs/dictlearn/bin/python", help="the peer venv's python")
    p.add_argument("--stage", choices=("all", "peer"), default="all", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage == "peer":
        print(json.dumps(stage_peer(args.work, args.fork)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="xc_dictlearn_"))
    stage_saekit(work)
    cmd = [args.peer_python, __file__, "--stage", "peer", "--work", str(work), "--fork", str(args.fork)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr[-4000:], file=sys.stderr)
        return res.returncode
    result = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))
    ok = all(r["same_active_latents"] and r["max_rel_diff_x_hat"] < 1e-5 for k, r in result.items() if k != "torch")
    print("MATCH" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
