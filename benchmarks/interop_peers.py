"""Interop with real peers: SAELens and sparsify read saekit's files, and saekit reads theirs.

For each architecture this script builds a saekit dictionary with random weights and a
non-trivial activation scale (so the fold on export is exercised), writes it with saekit
(native folder = SAELens folder; ``export(..., "sparsify")`` for top-k coders), then, in a
separate virtual environment with the peer installed from PyPI, loads the folder with
``sae_lens.SAE.load_from_disk`` / ``sparsify.SparseCoder.load_from_disk`` and computes encode,
decode and forward on the same inputs. Outputs are compared with saekit's to float tolerance.
In the other direction the peer builds dictionaries with random weights, writes them with its own
``save_model`` / ``save_to_disk``, and ``saekit.load`` must reproduce the peer's outputs.

Run:  .venv/bin/python benchmarks/interop_peers.py [--venvs /tmp/saekit-interop] [--work DIR]
The venvs are created on first use (``pip install torch==2.13.0`` first, then the peer).
Exit status 0 when every comparison is within tolerance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import saekit
from saekit.config import DictionaryConfig
from saekit.dictionaries import create
from saekit.io import export, save_dictionary

D, N, B = 16, 64, 32
ATOL, RTOL = 1e-5, 1e-5

# name -> (DictionaryConfig kwargs, peers that should load it)
CASES = {
    "relu": (dict(kind="relu"), ["saelens"]),
    "topk": (dict(kind="topk", k=6), ["saelens", "sparsify"]),
    "jumprelu": (dict(kind="jumprelu"), ["saelens"]),
    "batchtopk": (dict(kind="batchtopk", k=6), ["saelens"]),
    "transcoder_relu": (dict(kind="relu", d_out=12), ["saelens"]),
    "skip_transcoder_relu": (dict(kind="relu", d_out=12, skip=True), ["saelens"]),
    "transcoder_jumprelu": (dict(kind="jumprelu", d_out=12), ["saelens"]),
    "skip_transcoder_jumprelu": (dict(kind="jumprelu", d_out=12, skip=True), ["saelens"]),
    "transcoder_batchtopk": (dict(kind="batchtopk", k=6, d_out=12), ["saelens"]),
    "transcoder_topk": (dict(kind="topk", k=6, transcoder=True), ["sparsify"]),
    "skip_transcoder_topk": (dict(kind="topk", k=6, skip=True), ["sparsify"]),
    # issue 18's kinds (SAELens 6.54 has gated and abstopk; matryoshka is written as jumprelu)
    "matryoshka": (dict(kind="matryoshka", k=6, matryoshka_widths=(8, 32, 64)), ["saelens"]),
    "abstopk": (dict(kind="abstopk", k=6), ["saelens"]),
    "gated": (dict(kind="gated"), ["saelens"]),
    "relu_lp_annealed": (dict(kind="relu", penalty="lp", lp=0.5, lp_anneal_steps=100), ["saelens"]),
    "jumprelu_quadratic": (dict(kind="jumprelu", jumprelu_sparsity_loss="quadratic", target_l0=4.0), ["saelens"]),
}

PEERS = {
    "saelens": "sae-lens",
    "sparsify": "eai-sparsify",
    "circuit": "circuit-tracer",
    "dl": "dictionary-learning",
}
MODULES = {"saelens": "sae_lens", "sparsify": "sparsify", "circuit": "circuit_tracer", "dl": "dictionary_learning"}

# circuit-tracer reads a whole per-layer transcoder set: two sets of two layers (all or none skip)
CIRCUIT_SETS = {
    "ct_relu_jumprelu": [dict(kind="relu"), dict(kind="jumprelu")],
    "ct_skip": [dict(kind="relu", skip=True), dict(kind="jumprelu", skip=True)],
}

CIRCUIT_RUNNER = r"""
import json, sys, torch, yaml
from importlib.metadata import version
from safetensors.torch import load_file, save_file
from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
for job in json.loads(open(sys.argv[1]).read()):
    conf = yaml.safe_load(open(job["folder"] + "/config.yaml"))
    assert conf["model_kind"] == "transcoder_set"
    paths = {i: f"{job['folder']}/layer_{i}.safetensors" for i in range(job["n_layers"])}
    ts = load_transcoder_set(paths, scan="saekit-interop", feature_input_hook=conf["feature_input_hook"],
                             feature_output_hook=conf["feature_output_hook"], device=torch.device("cpu"),
                             dtype=torch.float32, lazy_encoder=False, lazy_decoder=False)
    x = load_file(job["inputs"])["x"]
    out = {}
    with torch.no_grad():
        for i, tc in enumerate(ts):
            z = tc.encode(x)
            out[f"z{i}"], out[f"decode{i}"], out[f"forward{i}"] = z, tc.decode(z, x), tc(x)
    save_file({k: v.contiguous() for k, v in out.items()}, job["out"])
print("circuit-tracer", version("circuit-tracer"))
"""

SAELENS_RUNNER = r"""
import json, sys, torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
import sae_lens
jobs = json.loads(open(sys.argv[1]).read())
for job in jobs:
    sae = SAE.load_from_disk(job["folder"], device="cpu")
    x = load_file(job["inputs"])["x"]
    with torch.no_grad():
        z = sae.encode(x)
        out = {"z": z, "decode": sae.decode(z), "forward": sae(x)}
    save_file({k: v.contiguous() for k, v in out.items()}, job["out"])
print("sae_lens", sae_lens.__version__)
"""

SPARSIFY_RUNNER = r"""
import json, sys, torch
from importlib.metadata import version
from safetensors.torch import load_file, save_file
from sparsify import SparseCoder
jobs = json.loads(open(sys.argv[1]).read())
for job in jobs:
    sc = SparseCoder.load_from_disk(job["folder"], device="cpu")
    x = load_file(job["inputs"])["x"]
    with torch.no_grad():
        acts, idx, _ = sc.encode(x)
        z = torch.zeros(x.shape[0], sc.num_latents).scatter_(-1, idx, acts)
        out = {"z": z, "decode": sc.decode(acts, idx), "forward": sc(x).sae_out}
    save_file({k: v.contiguous() for k, v in out.items()}, job["out"])
print("eai-sparsify", version("eai-sparsify"))
"""


# Reverse direction: the peer writes folders with its own save function, saekit reads them.
SAELENS_WRITER = r"""
import json, sys, torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
out_dir, inputs = sys.argv[1], sys.argv[2]
x = load_file(inputs)["x"]
D, N = x.shape[1], 4 * x.shape[1]
cases = {
    "standard": {"architecture": "standard"},
    "standard_no_bdec": {"architecture": "standard", "apply_b_dec_to_input": False},
    "topk": {"architecture": "topk", "k": 6},
    "topk_rescaled": {"architecture": "topk", "k": 6, "rescale_acts_by_decoder_norm": True},
    "jumprelu": {"architecture": "jumprelu"},
    "transcoder": {"architecture": "transcoder", "d_out": D // 2, "apply_b_dec_to_input": False},
    "skip_transcoder": {"architecture": "skip_transcoder", "d_out": D, "apply_b_dec_to_input": False},
}
g = torch.Generator().manual_seed(0)
for name, extra in cases.items():
    sae = SAE.from_dict({"d_in": D, "d_sae": N, "dtype": "float32", "device": "cpu", **extra})
    with torch.no_grad():
        for p_name, p in sae.named_parameters():
            if p_name == "threshold":
                p.copy_(0.05 + 0.1 * torch.rand(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        sae.save_model(f"{out_dir}/{name}")
        z = sae.encode(x)
        save_file({"z": z, "decode": sae.decode(z), "forward": sae(x)}, f"{out_dir}/{name}.out.safetensors")
print(json.dumps(sorted(cases)))
"""

SPARSIFY_WRITER = r"""
import json, sys, torch
from safetensors.torch import load_file, save_file
from sparsify import SparseCoder, SparseCoderConfig
out_dir, inputs = sys.argv[1], sys.argv[2]
x = load_file(inputs)["x"]
D = x.shape[1]
cases = {
    "sae": SparseCoderConfig(num_latents=4 * D, k=6),
    "transcoder": SparseCoderConfig(num_latents=4 * D, k=6, transcode=True),
    "skip_transcoder": SparseCoderConfig(num_latents=4 * D, k=6, transcode=True, skip_connection=True),
}
g = torch.Generator().manual_seed(1)
for name, cfg in cases.items():
    sc = SparseCoder(D, cfg)
    with torch.no_grad():
        for p in sc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        sc.save_to_disk(f"{out_dir}/layers.{name}")
        acts, idx, _ = sc.encode(x)
        z = torch.zeros(x.shape[0], sc.num_latents).scatter_(-1, idx, acts)
        save_file({"z": z, "decode": sc.decode(acts, idx), "forward": sc(x).sae_out},
                  f"{out_dir}/layers.{name}.out.safetensors")
print(json.dumps(["layers." + n for n in sorted(cases)]))
"""


# dictionary_learning (Marks et al.): its four SAE classes, saved the way its trainer saves them
# (ae.pt = state_dict, config.json with a "trainer" block); read only (saekit does not write it).
DL_WRITER = r"""
import json, os, sys, torch
from safetensors.torch import load_file, save_file
from dictionary_learning.dictionary import AutoEncoder, JumpReluAutoEncoder
from dictionary_learning.trainers.top_k import AutoEncoderTopK
from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
out_dir, inputs = sys.argv[1], sys.argv[2]
x = load_file(inputs)["x"]
D, N, K = x.shape[1], 4 * x.shape[1], 6
g = torch.Generator().manual_seed(2)
made = {"AutoEncoder": AutoEncoder(D, N), "AutoEncoderTopK": AutoEncoderTopK(D, N, K),
        "BatchTopKSAE": BatchTopKSAE(D, N, K), "JumpReluAutoEncoder": JumpReluAutoEncoder(D, N)}
for name, ae in made.items():
    with torch.no_grad():
        for p_name, p in ae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        if name == "JumpReluAutoEncoder":
            ae.threshold.copy_(0.05 + 0.2 * torch.rand(N, generator=g))
        if name == "BatchTopKSAE":
            ae.threshold.fill_(0.4)  # the running threshold its trainer learns
        os.makedirs(f"{out_dir}/{name}", exist_ok=True)
        torch.save(ae.state_dict(), f"{out_dir}/{name}/ae.pt")
        trainer = {"dict_class": name, "activation_dim": D, "dict_size": N, "k": K, "layer": 0, "lm_name": "tiny"}
        json.dump({"trainer": trainer}, open(f"{out_dir}/{name}/config.json", "w"))
        z = ae.encode(x)
        save_file({"z": z, "decode": ae.decode(z), "forward": ae(x)}, f"{out_dir}/{name}.out.safetensors")
print(json.dumps(sorted(made)))
"""


def compare(got: dict, want: dict) -> dict:
    row = {}
    for key in ("z", "decode", "forward"):
        row[key] = float((got[key] - want[key]).abs().max())
        row[f"{key}_ok"] = bool(torch.allclose(got[key], want[key], atol=ATOL, rtol=RTOL))
    row["active"] = float((want["z"] != 0).float().sum(-1).mean())
    return row


def reverse(py: Path, writer: str, peer: str, work: Path) -> list[dict]:
    """Folders written by the peer, loaded with saekit.load, outputs compared."""
    out_dir = work / f"written-by-{peer}"
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = work / "reverse.inputs.safetensors"
    save_file({"x": torch.randn(B, D, generator=torch.Generator().manual_seed(7)) * 2}, inputs)
    proc = subprocess.run([py, "-c", writer, str(out_dir), str(inputs)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return [{"peer": f"{peer}->saekit", "error": proc.stderr.strip().splitlines()[-1]}]
    x = load_file(inputs)["x"]
    rows = []
    for name in json.loads(proc.stdout.strip().splitlines()[-1]):
        sae = saekit.load(out_dir / name)
        with torch.no_grad():
            z = sae.encode(x)
            got = {"z": z, "decode": sae.decode(z), "forward": sae(x)}
        want = load_file(out_dir / f"{name}.out.safetensors")
        rows.append({"peer": f"{peer}->saekit", "case": name, **compare(got, want)})
    return rows


def ensure_venv(root: Path, peer: str) -> Path:
    """A venv with torch 2.13.0 and the peer; created (and cached under ``root``) when missing."""
    venv = root / peer
    py = venv / "bin" / "python"
    mod = MODULES[peer]
    if py.exists() and subprocess.run([py, "-c", f"import {mod}"], capture_output=True).returncode == 0:
        return py
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    # torch first, pinned to the version saekit is tested with, so the peer does not pull another
    subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", PEERS[peer]], check=True)
    return py


def perturbed(cfg: DictionaryConfig, seed: int) -> torch.nn.Module:
    """A saekit dictionary with random (not just initial) weights and act_scale ≠ 1."""
    g = torch.Generator().manual_seed(seed)
    sae = create(cfg, seed=seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(0.05 + 0.1 * torch.rand(sae.threshold.shape, generator=g))
        sae.act_scale.fill_(1.7)
    return sae.to_inference().eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venvs", default="/tmp/saekit-interop", help="where the peer venvs live (created if missing)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    args = ap.parse_args()
    torch.manual_seed(0)
    work = Path(args.work or tempfile.mkdtemp(prefix="saekit-interop-"))
    jobs: dict[str, list[dict]] = {"saelens": [], "sparsify": []}
    expected = {}
    for i, (name, (kw, peers)) in enumerate(CASES.items()):
        cfg = DictionaryConfig(d_in=D, n_latents=N, hook_name="blocks.0.hook_resid_post", model_name="tiny", **kw)
        sae = perturbed(cfg, seed=i)
        x = torch.randn(B, D, generator=torch.Generator().manual_seed(100 + i)) * 2
        inputs = work / f"{name}.inputs.safetensors"
        save_file({"x": x}, inputs)
        with torch.no_grad():
            z = sae.encode(x)
            expected[name] = {"z": z, "decode": sae.decode(z), "forward": sae(x)}
        native = work / "saekit" / name
        save_dictionary(sae, native)
        for peer in peers:
            if peer == "saelens":
                folder = native
            else:
                folder = work / "sparsify" / name
                export(native, folder, "sparsify")
            jobs[peer].append(
                {
                    "name": name,
                    "folder": str(folder),
                    "inputs": str(inputs),
                    "out": str(work / f"{name}.{peer}.out.safetensors"),
                }
            )
    jobs["circuit"] = []
    for j, (name, layers) in enumerate(CIRCUIT_SETS.items()):
        run = work / "saekit" / name
        x = torch.randn(B, D, generator=torch.Generator().manual_seed(200 + j)) * 2
        for layer, kw in enumerate(layers):
            cfg = DictionaryConfig(
                d_in=D, n_latents=N, transcoder=True, hook_name=f"blocks.{layer}.ln2.hook_normalized", **kw
            )
            sae = perturbed(cfg, seed=50 + 2 * j + layer)
            save_dictionary(sae, run / f"layer{layer}", extra={"hook_name_out": f"blocks.{layer}.hook_mlp_out"})
            with torch.no_grad():
                z = sae.encode(x)
                # circuit-tracer's decode(z, x) includes the skip path, like saekit's forward
                expected[f"{name}/layer{layer}"] = {"z": z, "decode": sae(x), "forward": sae(x)}
        inputs = work / f"{name}.inputs.safetensors"
        save_file({"x": x}, inputs)
        folder = work / "circuit" / name
        export(run, folder, "circuit-tracer")
        out = str(work / f"{name}.circuit.out.safetensors")
        jobs["circuit"].append({"name": name, "folder": str(folder), "inputs": str(inputs), "out": out, "n_layers": 2})
    results = []
    versions = {}
    runners = (("saelens", SAELENS_RUNNER), ("sparsify", SPARSIFY_RUNNER), ("circuit", CIRCUIT_RUNNER))
    for peer, runner in runners:
        py = ensure_venv(Path(args.venvs), peer)
        job_file = work / f"{peer}.jobs.json"
        job_file.write_text(json.dumps(jobs[peer]))
        proc = subprocess.run([py, "-c", runner, str(job_file)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            results.append({"peer": f"saekit->{peer}", "error": proc.stderr.strip().splitlines()[-1]})
            continue
        versions[peer] = proc.stdout.strip().splitlines()[-1]
        for job in jobs[peer]:
            got = load_file(job["out"])
            if peer == "circuit":  # one comparison per layer of the set
                for i in range(job["n_layers"]):
                    layer = {k: got[f"{k}{i}"] for k in ("z", "decode", "forward")}
                    case = f"{job['name']}/layer{i}"
                    results.append({"peer": "saekit->circuit", "case": case, **compare(layer, expected[case])})
                continue
            results.append({"peer": f"saekit->{peer}", "case": job["name"], **compare(got, expected[job["name"]])})
        if peer != "circuit":
            results += reverse(py, SAELENS_WRITER if peer == "saelens" else SPARSIFY_WRITER, peer, work)
    py = ensure_venv(Path(args.venvs), "dl")
    results += reverse(py, DL_WRITER, "dl", work)
    probe = "from importlib.metadata import version; print(version('dictionary-learning'))"
    versions["dl"] = (
        "dictionary-learning " + subprocess.run([py, "-c", probe], capture_output=True, text=True).stdout.strip()
    )
    ok = all("error" not in r and r["z_ok"] and r["decode_ok"] and r["forward_ok"] for r in results)
    print(f"saekit {saekit.__version__}, torch {torch.__version__}; peers: {versions}")
    head = f"{'max|Δz|':>10} {'max|Δdecode|':>13} {'max|Δforward|':>14}"
    print(f"{'direction':17} {'case':22} {'L0':>5} {head}  ok")
    for r in results:
        if "error" in r:
            print(f"{r['peer']:17} ERROR {r['error']}")
            continue
        good = r["z_ok"] and r["decode_ok"] and r["forward_ok"]
        diffs = f"{r['z']:10.2e} {r['decode']:13.2e} {r['forward']:14.2e}"
        print(f"{r['peer']:17} {r['case']:22} {r['active']:5.1f} {diffs}  {good}")
    if args.json:
        Path(args.json).write_text(json.dumps({"versions": versions, "results": results}, indent=2))
    print("ALL MATCH" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
