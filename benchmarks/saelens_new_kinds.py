"""SAELens loads saekit's folders of issue 18's kinds and computes the same outputs.

For matryoshka, abstopk, gated, annealed-Lp relu and quadratic-loss jumprelu (and the kinds
before them, as a control), a saekit dictionary with perturbed weights and act_scale ≠ 1 is
saved with saekit, loaded with ``sae_lens.SAE.load_from_disk`` in a venv that has SAELens, and
its encode / decode / forward are compared with saekit's (same tolerance as interop_peers.py).

Run: .venv/bin/python benchmarks/saelens_new_kinds.py --python benchmarks/.venvs/saelens/bin/python
(the venv needs sae-lens ≥ 6.54 for abstopk; see RESULTS.md for how it was made).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from interop_peers import CASES, SAELENS_RUNNER, B, D, N, compare, perturbed
from safetensors.torch import load_file, save_file

from saekit.config import DictionaryConfig
from saekit.io import save_dictionary

# Reverse direction: SAELens writes gated and abstopk SAEs (with and without input centring),
# saekit.load reads them.
WRITER = r"""
import json, sys, torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
out_dir, inputs = sys.argv[1], sys.argv[2]
x = load_file(inputs)["x"]
D = x.shape[1]
cases = {"gated": {"architecture": "gated"},
         "gated_no_bdec": {"architecture": "gated", "apply_b_dec_to_input": False},
         "abstopk": {"architecture": "abstopk", "k": 5},
         "abstopk_rescaled": {"architecture": "abstopk", "k": 5, "rescale_acts_by_decoder_norm": True}}
g = torch.Generator().manual_seed(0)
for name, extra in cases.items():
    sae = SAE.from_dict({"d_in": D, "d_sae": 4 * D, "dtype": "float32", "device": "cpu", **extra})
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        sae.save_model(f"{out_dir}/{name}")
        z = sae.encode(x)
        save_file({"z": z, "decode": sae.decode(z), "forward": sae(x)}, f"{out_dir}/{name}.out.safetensors")
print(json.dumps(sorted(cases)))
"""

NAMES = ["relu", "topk", "jumprelu", "batchtopk", "matryoshka", "abstopk", "gated", "relu_lp_annealed", "jumprelu_quadratic"]


def reverse(python: str, work: Path) -> bool:
    import saekit

    x = torch.randn(B, D, generator=torch.Generator().manual_seed(7)) * 2
    save_file({"x": x}, work / "rev.in.safetensors")
    out = work / "written-by-saelens"
    out.mkdir()
    proc = subprocess.run([python, "-c", WRITER, str(out), str(work / "rev.in.safetensors")], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return False
    ok = True
    for name in json.loads(proc.stdout.strip().splitlines()[-1]):
        sae = saekit.load(out / name)
        with torch.no_grad():
            z = sae.encode(x)
            row = compare({"z": z, "decode": sae.decode(z), "forward": sae(x)}, load_file(out / f"{name}.out.safetensors"))
        good = row["z_ok"] and row["decode_ok"] and row["forward_ok"]
        ok &= good
        print(f"saelens->saekit {name:18} L0 {row['active']:5.1f} max|Δz| {row['z']:.1e}  {'ok' if good else 'MISMATCH'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="python of a venv with sae-lens installed")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="saekit-sl-kinds-"))
    jobs, expected = [], {}
    for i, name in enumerate(NAMES):
        cfg = DictionaryConfig(d_in=D, n_latents=N, hook_name="blocks.0.hook_resid_post", model_name="tiny", **CASES[name][0])
        sae = perturbed(cfg, seed=300 + i)
        x = torch.randn(B, D, generator=torch.Generator().manual_seed(400 + i)) * 2
        save_file({"x": x}, work / f"{name}.in.safetensors")
        with torch.no_grad():
            z = sae.encode(x)
            expected[name] = {"z": z, "decode": sae.decode(z), "forward": sae(x)}
        save_dictionary(sae, work / name)
        jobs.append({"name": name, "folder": str(work / name), "inputs": str(work / f"{name}.in.safetensors"),
                     "out": str(work / f"{name}.out.safetensors")})
    (work / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([args.python, "-c", SAELENS_RUNNER, str(work / "jobs.json")], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    print(proc.stdout.strip().splitlines()[-1])
    ok = True
    for job in jobs:
        row = compare(load_file(job["out"]), expected[job["name"]])
        arch = json.loads((Path(job["folder"]) / "cfg.json").read_text())["architecture"]
        good = row["z_ok"] and row["decode_ok"] and row["forward_ok"]
        ok &= good
        print(f"{job['name']:20} {arch:10} L0 {row['active']:5.1f} max|Δz| {row['z']:.1e} "
              f"max|Δforward| {row['forward']:.1e}  {'ok' if good else 'MISMATCH'}")
    ok &= reverse(args.python, work)
    print("ALL MATCH" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
