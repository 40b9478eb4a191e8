"""saekit.io: the native (SAELens-compatible) folder, foreign formats and exports, on real files."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import saekit
from saekit.config import DictionaryConfig
from saekit.dictionaries import create
from saekit.io import export, load, save_dictionary
from saekit.io.format import SAELENS_SCHEMA_VERSION

D, N = 8, 32

ARCHS = {
    "relu": dict(kind="relu"),
    "topk": dict(kind="topk", k=4),
    "batchtopk": dict(kind="batchtopk", k=4),
    "jumprelu": dict(kind="jumprelu"),
    "transcoder": dict(kind="relu", d_out=12),
    "skip_transcoder": dict(kind="relu", d_out=12, skip=True),
    "topk_skip_transcoder": dict(kind="topk", k=3, skip=True),
    "jumprelu_transcoder": dict(kind="jumprelu", d_out=6),
    "matryoshka": dict(kind="matryoshka", k=4, matryoshka_widths=(4, 16)),
    "abstopk": dict(kind="abstopk", k=4),
    "gated": dict(kind="gated"),
    "gated_skip_transcoder": dict(kind="gated", d_out=12, skip=True),
    "abstopk_transcoder": dict(kind="abstopk", k=3, d_out=6),
    "relu_lp_annealed": dict(kind="relu", penalty="lp", lp=0.4, lp_anneal_steps=50),
    "jumprelu_quadratic": dict(kind="jumprelu", jumprelu_sparsity_loss="quadratic", target_l0=3.0),
}


def make(seed: int = 0, act_scale: float = 1.0, **kw) -> torch.nn.Module:
    """A saekit dictionary with random weights (not just its initialisation)."""
    cfg = DictionaryConfig(d_in=D, n_latents=N, hook_name="blocks.1.hook_resid_post", model_name="tiny", **kw)
    sae = create(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(0.05 + 0.1 * torch.rand(sae.threshold.shape, generator=g))
        if cfg.kind in ("batchtopk", "matryoshka"):
            sae.threshold_updates.fill_(17)
        if hasattr(sae, "lp_stage"):  # annealing state mid-way: it must survive the round trip
            sae.lp_stage.fill_(3)
            sae.lp_coef_scale.fill_(0.37)
        sae.act_scale.fill_(act_scale)
    return sae.to_inference().eval()


def x_batch(seed: int = 3, d: int = D) -> torch.Tensor:
    return torch.randn(16, d, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize("arch", list(ARCHS))
def test_round_trip_identical_tensors_and_config(tmp_path, arch):
    sae = make(**ARCHS[arch])
    save_dictionary(sae, tmp_path / arch, extra={"metrics": {"fvu": 0.25, "l0": 4.0}})
    back = saekit.load(tmp_path / arch)
    assert type(back) is type(sae)
    assert back.cfg == sae.cfg
    a, b = sae.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name
    x = x_batch()
    with torch.no_grad():
        assert torch.equal(sae(x), back(x))
        assert torch.equal(sae.encode(x), back.encode(x))
    assert back.saekit_meta["metrics"] == {"fvu": 0.25, "l0": 4.0}


def test_round_trip_keeps_bfloat16(tmp_path):
    sae = make(kind="topk", k=4).to(torch.bfloat16)
    save_dictionary(sae, tmp_path / "bf16")
    cfg = json.loads((tmp_path / "bf16" / "cfg.json").read_text())
    assert cfg["dtype"] == "bfloat16"
    back = load(tmp_path / "bf16")
    assert back.W_enc.dtype == torch.bfloat16
    assert torch.equal(back.W_dec, sae.W_dec)


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "skip_transcoder"])
def test_act_scale_is_folded_on_save(tmp_path, arch):
    sae = make(act_scale=1.7, **ARCHS[arch])
    save_dictionary(sae, tmp_path / "d")
    assert float(sae.act_scale) == pytest.approx(1.7)  # the caller's dictionary is untouched
    back = load(tmp_path / "d")
    assert float(back.act_scale) == 1.0
    assert json.loads((tmp_path / "d" / "saekit.json").read_text())["act_scale_folded"] == pytest.approx(1.7)
    x = x_batch(d=sae.cfg.d_in)
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), sae.encode(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(back(x), sae(x), atol=1e-5, rtol=1e-5)
    # the weights file alone (what SAELens reads) computes the same function on raw inputs
    w = load_file(tmp_path / "d" / "sae_weights.safetensors")
    pre = (x - (0 if sae.cfg.transcoder else w["b_dec"])) @ w["W_enc"] + w["b_enc"]
    torch.testing.assert_close(pre, sae.pre_acts(sae.scale_in(x)), atol=1e-5, rtol=1e-5)


def test_cfg_json_has_the_fields_saelens_reads(tmp_path):
    expected_arch = {
        "relu": "standard",
        "topk": "topk",
        "batchtopk": "jumprelu",
        "jumprelu": "jumprelu",
        "transcoder": "transcoder",
        "skip_transcoder": "skip_transcoder",
        "topk_skip_transcoder": "topk_skip_transcoder",
        "jumprelu_transcoder": "jumprelu_transcoder",
        "matryoshka": "jumprelu",
        "abstopk": "abstopk",
        "gated": "gated",
        "gated_skip_transcoder": "gated_skip_transcoder",
        "abstopk_transcoder": "abstopk_transcoder",
        "relu_lp_annealed": "standard",
        "jumprelu_quadratic": "jumprelu",
    }
    for arch, kw in ARCHS.items():
        save_dictionary(make(**kw), tmp_path / arch, feature_density=torch.full((N,), 0.01))
        cfg = json.loads((tmp_path / arch / "cfg.json").read_text())
        assert cfg["architecture"] == expected_arch[arch]
        assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["device"]) == (D, N, "float32", "cpu")
        assert cfg["normalize_activations"] == "none"
        assert cfg["apply_b_dec_to_input"] is (not arch.endswith("transcoder"))
        assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
        assert cfg["metadata"]["model_name"] == "tiny"
        assert cfg["metadata"]["sae_lens_version"] == SAELENS_SCHEMA_VERSION
        assert cfg["hook_layer"] == 1
        if "k" in ARCHS[arch]:
            assert cfg["k"] == ARCHS[arch]["k"]
        if arch.endswith("transcoder"):
            assert cfg["d_out"] == make(**ARCHS[arch]).cfg.d_out
        tensors = load_file(tmp_path / arch / "sae_weights.safetensors")
        gated = ARCHS[arch]["kind"] == "gated"
        want = {"W_enc", "W_dec", "b_dec"} | ({"b_gate", "b_mag", "r_mag"} if gated else {"b_enc"})
        want |= {"threshold"} if ARCHS[arch]["kind"] in ("jumprelu", "batchtopk", "matryoshka") else set()
        want |= {"W_skip"} if ARCHS[arch].get("skip") else set()
        assert set(tensors) == want
        sparsity = load_file(tmp_path / arch / "sparsity.safetensors")["sparsity"]
        torch.testing.assert_close(sparsity, torch.full((N,), -2.0))


# ---------------------------------------------------------------------- foreign formats


def _saelens_reference(w: dict, cfg: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAELens 6's inference math (StandardSAE / TopKSAE), written out independently."""
    sae_in = x - w["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    pre = sae_in @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "topk":
        norms = w["W_dec"].norm(dim=-1)
        if cfg.get("rescale_acts_by_decoder_norm"):
            pre = pre * norms
        vals, idx = pre.topk(cfg["k"], dim=-1)
        z = torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
        dec_z = z / norms if cfg.get("rescale_acts_by_decoder_norm") else z
        return z, dec_z @ w["W_dec"] + w["b_dec"]
    z = pre.relu()
    return z, z @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize(
    "cfg",
    [
        {"architecture": "standard", "apply_b_dec_to_input": False},
        {"architecture": "topk", "k": 5, "rescale_acts_by_decoder_norm": True},
        # a pre-6.0 SAELens config: no architecture, top-k through activation_fn_kwargs
        {
            "activation_fn_str": "topk",
            "activation_fn_kwargs": {"k": 5},
            "hook_point": "blocks.0.hook_resid_pre",
        },
    ],
)
def test_loads_saelens_folders_exactly(tmp_path, cfg):
    g = torch.Generator().manual_seed(0)
    w = {
        "W_enc": torch.randn(D, N, generator=g),
        "b_enc": torch.randn(N, generator=g) * 0.1,
        "W_dec": torch.randn(N, D, generator=g),  # not unit norm, as in many published SAEs
        "b_dec": torch.randn(D, generator=g),
    }
    full = {"d_in": D, "d_sae": N, "dtype": "float32", **cfg}
    save_file(w, tmp_path / "sae_weights.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps(full))
    sae = load(tmp_path)
    ref_cfg = dict(full)
    ref_cfg.setdefault("architecture", "topk" if "activation_fn_kwargs" in cfg else "standard")
    ref_cfg.setdefault("k", cfg.get("activation_fn_kwargs", {}).get("k"))
    x = x_batch()
    z_ref, out_ref = _saelens_reference(w, ref_cfg, x)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), z_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae(x), out_ref, atol=1e-5, rtol=1e-5)
    if "hook_point" in cfg:
        assert sae.cfg.hook_name == "blocks.0.hook_resid_pre"


@pytest.mark.parametrize(
    "cfg",
    [
        {"architecture": "gated", "apply_b_dec_to_input": False},
        {"architecture": "gated"},
        {"architecture": "abstopk", "k": 5, "rescale_acts_by_decoder_norm": True},
    ],
)
def test_loads_saelens_gated_and_abstopk_folders_exactly(tmp_path, cfg):
    """SAELens 6.54's GatedSAE / AbsTopKSAE inference math, written out independently."""
    g = torch.Generator().manual_seed(1)
    w = {"W_enc": torch.randn(D, N, generator=g), "W_dec": torch.randn(N, D, generator=g), "b_dec": torch.randn(D, generator=g)}
    if cfg["architecture"] == "gated":
        w.update(b_gate=torch.randn(N, generator=g) * 0.3, b_mag=torch.randn(N, generator=g) * 0.3, r_mag=torch.randn(N, generator=g) * 0.3)
    else:
        w["b_enc"] = torch.randn(N, generator=g) * 0.1
    save_file(w, tmp_path / "sae_weights.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": D, "d_sae": N, "dtype": "float32", **cfg}))
    sae = load(tmp_path)
    assert sae.cfg.kind == cfg["architecture"]
    x = x_batch()
    sae_in = x - w["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    if cfg["architecture"] == "gated":
        gate = (sae_in @ w["W_enc"] + w["b_gate"]) > 0
        z = gate * torch.relu(sae_in @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"])
        dec_z = z
    else:
        norms = w["W_dec"].norm(dim=-1)
        pre = (sae_in @ w["W_enc"] + w["b_enc"]) * norms
        idx = pre.abs().topk(5, dim=-1).indices
        z = torch.zeros_like(pre).scatter_(-1, idx, pre.gather(-1, idx))
        assert bool((z < 0).any())  # signed codes
        dec_z = z / norms
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), z, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae(x), dec_z @ w["W_dec"] + w["b_dec"], atol=1e-5, rtol=1e-5)


def _sparsify_folder(path, transcode=False, skip=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    st = {
        "encoder.weight": torch.randn(N, D, generator=g),
        "encoder.bias": torch.randn(N, generator=g) * 0.1,
        "W_dec": torch.randn(N, D, generator=g),
        "b_dec": torch.randn(D, generator=g),
    }
    if skip:
        st["W_skip"] = torch.randn(D, D, generator=g) * 0.1
    path.mkdir(parents=True)
    save_file(st, path / "sae.safetensors")
    cfg = {"activation": "topk", "expansion_factor": 4, "normalize_decoder": True, "num_latents": N, "k": 5}
    cfg |= {"multi_topk": False, "skip_connection": skip, "transcode": transcode, "d_in": D}
    (path / "cfg.json").write_text(json.dumps(cfg))
    return st


def _sparsify_reference(st, x, transcode, k=5):
    """sparsify's SparseCoder math: centre unless transcoding, ReLU, top-k, decode, skip."""
    xin = x if transcode else x - st["b_dec"]
    pre = torch.relu(xin @ st["encoder.weight"].T + st["encoder.bias"])
    vals, idx = pre.topk(k, dim=-1)
    z = torch.zeros_like(pre).scatter_(-1, idx, vals)
    out = z @ st["W_dec"] + st["b_dec"]
    if "W_skip" in st:
        out = out + x @ st["W_skip"].T
    return z, out


@pytest.mark.parametrize("transcode,skip", [(False, False), (True, False), (True, True), (False, True)])
def test_loads_sparsify_folders_exactly(tmp_path, transcode, skip):
    folder = tmp_path / "layers.3"
    st = _sparsify_folder(folder, transcode, skip)
    sae = load(folder)
    assert sae.cfg.kind == "topk" and sae.cfg.k == 5 and sae.cfg.hook_name == "layers.3"
    x = x_batch()
    z_ref, out_ref = _sparsify_reference(st, x, transcode)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), z_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae(x), out_ref, atol=1e-5, rtol=1e-5)


def _dl_reference(cls, st, x):
    """dictionary_learning's encode/decode for its four SAE classes."""
    if cls == "JumpReluAutoEncoder":
        pre = x @ st["W_enc"] + st["b_enc"]  # apply_b_dec_to_input is False by default
        z = torch.relu(pre * (pre > st["threshold"]))
        return z, z @ st["W_dec"] + st["b_dec"]
    b = st["bias"] if cls == "AutoEncoder" else st["b_dec"]
    post = torch.relu((x - b) @ st["encoder.weight"].T + st["encoder.bias"])
    if cls == "AutoEncoder":
        z = post
    elif cls == "AutoEncoderTopK":
        vals, idx = post.topk(int(st["k"]), dim=-1)
        z = torch.zeros_like(post).scatter_(-1, idx, vals)
    else:  # BatchTopKSAE at inference: the learned global threshold
        z = post * (post > st["threshold"])
    return z, z @ st["decoder.weight"].T + b


@pytest.mark.parametrize("cls", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "JumpReluAutoEncoder"])
def test_loads_dictionary_learning_folders_exactly(tmp_path, cls):
    g = torch.Generator().manual_seed(1)
    if cls == "JumpReluAutoEncoder":
        st = {
            "W_enc": torch.randn(D, N, generator=g),
            "b_enc": torch.randn(N, generator=g) * 0.1,
            "W_dec": torch.randn(N, D, generator=g),
            "b_dec": torch.randn(D, generator=g),
            "threshold": torch.rand(N, generator=g),
        }
    else:
        st = {
            "encoder.weight": torch.randn(N, D, generator=g),
            "encoder.bias": torch.randn(N, generator=g) * 0.1,
            "decoder.weight": torch.randn(D, N, generator=g),
        }
        if cls == "AutoEncoder":
            st["bias"] = torch.randn(D, generator=g)
        else:
            st |= {"b_dec": torch.randn(D, generator=g), "k": torch.tensor(5, dtype=torch.int)}
            st["threshold"] = torch.tensor(0.8 if cls == "BatchTopKSAE" else -1.0)
    torch.save(st, tmp_path / "ae.pt")
    trainer = {"dict_class": cls, "activation_dim": D, "dict_size": N, "layer": 2}
    conf = {"trainer": trainer | {"lm_name": "EleutherAI/pythia-70m-deduped"}}
    (tmp_path / "config.json").write_text(json.dumps(conf))
    sae = load(tmp_path)
    assert sae.cfg.hook_name == "blocks.2.hook_resid_post"
    assert sae.cfg.model_name == "EleutherAI/pythia-70m-deduped"
    x = x_batch()
    z_ref, out_ref = _dl_reference(cls, st, x)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), z_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae(x), out_ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- export


def test_export_sparsify_round_trip_matches_sparsify_math(tmp_path):
    run = tmp_path / "run"
    saes = {
        "blocks.0.hook_resid_post": make(kind="topk", k=5, act_scale=1.3),
        "blocks.1.hook_resid_post": make(seed=4, kind="topk", k=5),
    }
    for name, sae in saes.items():
        save_dictionary(sae, run / name)
    from saekit.cli import main

    assert main(["export", str(run), "--format", "sparsify", "--out", str(tmp_path / "sp")]) == 0
    for name, sae in saes.items():
        folder = tmp_path / "sp" / name
        cfg = json.loads((folder / "cfg.json").read_text())
        assert (cfg["d_in"], cfg["num_latents"], cfg["k"], cfg["transcode"]) == (D, N, 5, False)
        st = load_file(folder / "sae.safetensors")
        assert st["encoder.weight"].shape == (N, D)
        x = x_batch()
        z_ref, out_ref = _sparsify_reference(st, x, transcode=False)
        with torch.no_grad():
            torch.testing.assert_close(z_ref, sae.encode(x), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out_ref, sae(x), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(load(folder)(x), sae(x), atol=1e-5, rtol=1e-5)


def test_export_saelens_converts_a_sparsify_folder(tmp_path):
    st = _sparsify_folder(tmp_path / "layers.0")
    written = export(tmp_path / "layers.0", tmp_path / "out", "saelens")
    assert {p.name for p in written} == {"sae_weights.safetensors", "cfg.json"}
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    w = load_file(tmp_path / "out" / "sae_weights.safetensors")
    x = x_batch()
    z_ref, out_ref = _sparsify_reference(st, x, transcode=False)
    z, out = _saelens_reference(w, cfg, x)
    torch.testing.assert_close(z, z_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)


def test_export_circuit_tracer_layout(tmp_path):
    run = tmp_path / "run"
    saes = []
    for layer, kind in enumerate(("relu", "jumprelu", "relu")):  # mixed skip: see the refusal test
        cfg = DictionaryConfig(
            kind=kind,
            d_in=D,
            n_latents=N,
            transcoder=True,
            skip=True,
            hook_name=f"blocks.{layer}.ln2.hook_normalized",
            model_name="tiny",
        )
        sae = create(cfg, seed=layer)
        with torch.no_grad():
            for p in sae.parameters():
                p.add_(0.1 * torch.randn_like(p))
            if kind == "jumprelu":
                sae.threshold.fill_(0.05)
            sae.act_scale.fill_(1.5)
        saes.append(sae)
        save_dictionary(sae, run / f"layer{layer}", extra={"hook_name_out": f"blocks.{layer}.hook_mlp_out"})
    written = export(run, tmp_path / "ct", "circuit-tracer")
    assert sorted(p.name for p in written) == ["config.yaml"] + [f"layer_{i}.safetensors" for i in range(3)]
    conf = yaml.safe_load((tmp_path / "ct" / "config.yaml").read_text())
    assert conf == {
        "model_kind": "transcoder_set",
        "model_name": "tiny",
        "feature_input_hook": "ln2.hook_normalized",
        "feature_output_hook": "hook_mlp_out",
    }
    x = x_batch()
    for layer, sae in enumerate(saes):
        st = load_file(tmp_path / "ct" / f"layer_{layer}.safetensors")
        assert st["W_enc"].shape == (N, D) and st["W_dec"].shape == (N, D)
        assert st["W_skip"].shape == (D, D)
        assert ("activation_function.threshold" in st) == (layer == 1)
        # circuit-tracer 0.5's SingleLayerTranscoder: F.linear(x, W_enc, b_enc), then ReLU or
        # JumpReLU x·[x > θ], then acts @ W_dec + b_dec (+ x @ W_skip.T)
        pre = torch.nn.functional.linear(x, st["W_enc"], st["b_enc"])
        thr = st.get("activation_function.threshold")
        acts = pre * (pre > thr) if thr is not None else torch.relu(pre)
        out = acts @ st["W_dec"] + st["b_dec"] + (x @ st["W_skip"].T if "W_skip" in st else 0)
        with torch.no_grad():
            torch.testing.assert_close(out, sae(x), atol=1e-5, rtol=1e-5)


def test_export_refuses_what_the_target_cannot_represent(tmp_path):
    save_dictionary(make(kind="relu"), tmp_path / "relu")
    save_dictionary(make(kind="topk", k=3, d_out=12), tmp_path / "tc")
    with pytest.raises(saekit.DataError, match="sparsify has top-k coders only"):
        export(tmp_path / "relu", tmp_path / "o1", "sparsify")
    with pytest.raises(saekit.DataError, match="d_out = d_in"):
        export(tmp_path / "tc", tmp_path / "o2", "sparsify")
    with pytest.raises(saekit.DataError, match="SAELens has no class"):
        export(tmp_path / "tc", tmp_path / "o3", "saelens")
    with pytest.raises(saekit.DataError, match="ReLU or JumpReLU transcoder"):
        export(tmp_path / "relu", tmp_path / "o4", "circuit-tracer")
    gated = DictionaryConfig(kind="gated", d_in=D, n_latents=N, transcoder=True, hook_name="blocks.0.ln2.hook_normalized")
    save_dictionary(create(gated), tmp_path / "gated_tc")
    with pytest.raises(saekit.DataError, match="ReLU or JumpReLU transcoder"):  # no b_enc: its own gate
        export(tmp_path / "gated_tc", tmp_path / "o4b", "circuit-tracer")
    gated_tc = DictionaryConfig(kind="gated", d_in=D, n_latents=N, d_out=12)
    save_dictionary(create(gated_tc), tmp_path / "gated_tc12")
    with pytest.raises(saekit.DataError, match="SAELens has no class"):
        export(tmp_path / "gated_tc12", tmp_path / "o4c", "saelens")
    for layer in (0, 1):
        cfg = DictionaryConfig(kind="relu", d_in=D, n_latents=N, transcoder=True, skip=layer == 1)
        save_dictionary(
            create(cfg.replace(hook_name=f"blocks.{layer}.ln2.hook_normalized")), tmp_path / "ct" / str(layer)
        )
    with pytest.raises(saekit.DataError, match="layers \\[1\\] have skip connections and the others do not"):
        export(tmp_path / "ct", tmp_path / "o5", "circuit-tracer")
    (tmp_path / "ct" / "0").rename(tmp_path / "ct0")
    with pytest.raises(saekit.DataError, match="every layer 0..1; layers \\[0\\] have none"):
        export(tmp_path / "ct", tmp_path / "o6", "circuit-tracer")


def test_resave_replaces_config_and_drops_stale_sparsity(tmp_path):
    save_dictionary(make(kind="relu"), tmp_path / "d", feature_density=torch.full((N,), 0.5))
    topk = make(seed=3, kind="topk", k=4)
    save_dictionary(topk, tmp_path / "d")
    assert not (tmp_path / "d" / "sparsity.safetensors").exists()  # it described the old weights
    back = load(tmp_path / "d")
    assert back.cfg == topk.cfg and torch.equal(back.W_enc, topk.W_enc)


def test_save_does_not_touch_the_dictionary(tmp_path):
    sae = make(kind="batchtopk", k=4, act_scale=2.0)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    save_dictionary(sae, tmp_path / "d")
    for k, v in sae.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_round_trip_from_a_cuda_dictionary(tmp_path):
    sae = make(kind="topk", k=4, act_scale=1.5).cuda()
    save_dictionary(sae, tmp_path / "d")
    back = load(tmp_path / "d", device="cuda")
    x = x_batch().cuda()
    with torch.no_grad():
        torch.testing.assert_close(back(x), sae(x), atol=1e-5, rtol=1e-5)
    assert back.W_enc.device.type == "cuda"


def test_transcoder_output_hook_round_trips_and_old_folders_keep_theirs(tmp_path):
    """hook_name_out is saved in the config and cfg.json; a folder written before the field existed
    (only extra={"hook_name_out": ...}) loads with it, not with the input hook or a guess."""
    import saekit

    cfg = DictionaryConfig(kind="relu", d_in=D, n_latents=N, transcoder=True, hook_name="blocks.0.ln2.hook_normalized",
                           hook_name_out="blocks.0.hook_resid_post")
    save_dictionary(create(cfg, seed=0), tmp_path / "new")
    assert saekit.load(tmp_path / "new").cfg.hook_name_out == "blocks.0.hook_resid_post"
    assert json.loads((tmp_path / "new" / "cfg.json").read_text())["metadata"]["hook_name_out"] == "blocks.0.hook_resid_post"
    save_dictionary(create(cfg.replace(hook_name_out=""), seed=0), tmp_path / "old", extra={"hook_name_out": "blocks.0.hook_resid_post"})
    assert saekit.load(tmp_path / "old").cfg.hook_name_out == "blocks.0.hook_resid_post"
    (tmp_path / "new" / "saekit.json").unlink()  # now only SAELens's cfg.json says it
    assert saekit.load(tmp_path / "new").cfg.hook_name_out == "blocks.0.hook_resid_post"
