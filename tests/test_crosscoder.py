"""Crosscoders: planted shared / exclusive features, latent scaling, resume, files, bad input."""

import pytest
import torch
from synthetic import planted_model_pair

import saekit
from saekit.config import DictionaryConfig, TrainConfig
from saekit.errors import ConfigError, DataError
from saekit.evaluation import crosscoder_sharing, firing_density, latent_scaling
from saekit.training import Trainer, train

N_LAT = 64


def tcfg(**kw):
    base = dict(batch_size=512, total_tokens=200_000, lr=3e-3, lr_warmup_steps=20, device="cpu", log_every=50)
    return TrainConfig(**{**base, **kw})


def truth_directions(world):
    """Each planted feature as the crosscoder should write it: [F, 2d], unit norm."""
    strength_b = {"a": 0.0, "weak": 0.25}
    in_a = torch.tensor([k != "b" for k in world["kinds"]], dtype=torch.float32)
    in_b = torch.tensor([strength_b.get(k, 1.0) for k in world["kinds"]])
    t = torch.cat([world["dirs_a"] * in_a[:, None], world["dirs_b"] * in_b[:, None]], dim=1)
    return t / t.norm(dim=1, keepdim=True)


def match(cc, world):
    """(best latent per feature, its cosine, best feature per latent, its cosine)."""
    w = cc.W_dec.detach().reshape(cc.n_latents, -1)
    cos = truth_directions(world) @ (w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)).T
    f_best, f_arg = cos.max(1)
    l_best, l_arg = cos.max(0)
    return f_arg, f_best, l_arg, l_best


@pytest.fixture(scope="module")
def world():
    return planted_model_pair(seed=0)


@pytest.fixture(scope="module")
def btk(world):
    cfg = DictionaryConfig(kind="batchtopk", d_in=48, n_latents=N_LAT, k=3, n_sources=2)
    return train(cfg, {"a": world["a"], "b": world["b"]}, tcfg(), progress=False)


def test_planted_shared_and_exclusive_features_are_classified(world, btk):
    assert btk.W_dec.shape == (N_LAT, 2, 48) and btk.cfg.source_names == ("a", "b")
    # latents the batch top-k never selects keep their random (equal-norm) init: dead by density
    sharing = crosscoder_sharing(btk, density=firing_density(btk, {"a": world["a"], "b": world["b"]}))
    kinds = world["kinds"]
    f_arg, f_best, l_arg, l_best = match(btk, world)
    for cls in ("shared", "a", "b"):
        feats = [i for i, k in enumerate(kinds) if k == cls]
        recall = sum(f_best[i] > 0.9 and sharing.classes[int(f_arg[i])] == cls for i in feats) / len(feats)
        latents = sharing.latents(cls)
        precision = sum(l_best[j] > 0.9 and kinds[int(l_arg[j])] == cls for j in latents) / max(1, len(latents))
        assert recall >= 0.9 and precision >= 0.9, (cls, recall, precision, sharing.counts())
    # a shared latent's two decoders are unrelated directions here (independent bases): the cosine
    # is reported, not assumed; an exclusive latent's share in the other model is ~0
    excl = sharing.exclusive()
    assert float(sharing.share[excl].min(-1).values.max()) < 0.1
    assert sharing.relative_norm.shape == (N_LAT,) and sharing.pair_cosine.shape == (N_LAT,)


def test_latent_scaling_flags_a_feature_that_is_only_weaker_in_one_model():
    """A feature present in both models but 4x weaker in B: the L1 crosscoder shrinks B's decoder
    to zero (it looks A-only, Minder et al.'s "complete shrinkage"); latent scaling finds it in B's
    error, and leaves the truly A-only features unflagged."""
    world = planted_model_pair(n_weak=4, seed=1)
    cfg = DictionaryConfig(kind="relu", d_in=48, n_latents=N_LAT, n_sources=2, sparsity_coef=1.0)
    cc = train(cfg, {"a": world["a"], "b": world["b"]}, tcfg(total_tokens=250_000), progress=False)
    sharing = crosscoder_sharing(cc)
    f_arg, f_best, _, _ = match(cc, world)
    kinds = world["kinds"]
    weak = [int(f_arg[i]) for i, k in enumerate(kinds) if k == "weak" and f_best[i] > 0.9]
    only_a = [int(f_arg[i]) for i, k in enumerate(kinds) if k == "a" and f_best[i] > 0.9]
    assert len(weak) >= 3 and len(only_a) >= 7
    assert all(sharing.classes[j] == "a" for j in weak), [sharing.share[j].tolist() for j in weak]
    scaling = latent_scaling(cc, {"a": world["a"], "b": world["b"]}, sharing=sharing)
    flagged = {j for j, f in zip(scaling.latents, scaling.flagged.tolist()) if f}
    assert set(weak) <= flagged and not flagged & set(only_a), (weak, only_a, scaling.to_dict())
    row = scaling.latents.index(weak[0])
    assert 0.15 < float(scaling.nu_error[row, 1]) < 0.35  # ≈ the planted 0.25


def test_a_model_against_itself_shares_every_alive_latent(world):
    cfg = DictionaryConfig(kind="batchtopk", d_in=48, n_latents=32, k=3, n_sources=2)
    cc = train(cfg, {"x": world["a"], "same": world["a"].clone()}, tcfg(total_tokens=60_000), progress=False)
    sharing = crosscoder_sharing(cc, density=firing_density(cc, {"x": world["a"], "same": world["a"]}))
    alive = [i for i, c in enumerate(sharing.classes) if c != "dead"]
    assert len(alive) >= 24
    assert all(sharing.classes[i] == "shared" for i in alive), sharing.counts()
    assert float((sharing.share[alive, 0] - 0.5).abs().max()) < 0.1


def test_relative_norm_and_classes_follow_the_decoder_norms():
    cfg = DictionaryConfig(kind="topk", d_in=4, n_latents=4, k=1, n_sources=2, source_names=("base", "reg"))
    cc = saekit.dictionaries.create(cfg)
    with torch.no_grad():
        cc.W_dec.zero_()
        cc.W_dec[0, 0, 0], cc.W_dec[0, 1, 1] = 1.0, 1.0  # shared, orthogonal decoders
        cc.W_dec[1, 0, 0], cc.W_dec[1, 1, 0] = 1.0, 0.05  # base only
        cc.W_dec[2, 0, 2], cc.W_dec[2, 1, 2] = 0.05, 1.0  # reg only
    s = crosscoder_sharing(cc)  # latent 3: zero decoders, dead
    assert s.classes == ["shared", "base", "reg", "dead"]
    assert torch.allclose(s.relative_norm[:3], torch.tensor([0.5, 0.05 / 1.05, 1 / 1.05]))
    assert float(s.pair_cosine[0]) == pytest.approx(0.0) and float(s.pair_cosine[1]) == pytest.approx(1.0)
    assert crosscoder_sharing(cc, thresholds={"exclusive": 0.97}).classes[1] == "shared"


SMALL = {"a": torch.randn(3000, 16, generator=torch.Generator().manual_seed(0))}
SMALL["b"] = SMALL["a"] @ torch.randn(16, 16, generator=torch.Generator().manual_seed(1)) * 0.3


def test_exact_resume_equals_an_uninterrupted_run(tmp_path):
    cfgs = [
        DictionaryConfig(kind="batchtopk", d_in=16, n_latents=32, k=2, n_sources=2),
        DictionaryConfig(kind="relu", d_in=16, n_latents=32, n_sources=2, sparsity_coef=0.3),
    ]
    kw = dict(batch_size=64, total_tokens=64 * 30, dead_tokens=128, checkpoint_every=5, normalize=True, log_every=5)
    full = train(cfgs, SMALL, tcfg(out_dir=str(tmp_path / "full"), **kw), progress=False)
    part = Trainer(cfgs, SMALL, tcfg(out_dir=str(tmp_path / "part"), **kw), progress=False)
    for _ in range(13):
        part.step(*part.next_batch())
    part.save_checkpoint()
    resumed = train(cfgs, SMALL, tcfg(out_dir=str(tmp_path / "part"), **kw), resume=True, progress=False)
    for a, b in zip(full, resumed):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert not torch.equal(full[0].act_scale[0], full[0].act_scale[1])  # one scale per source


def test_save_load_round_trip_and_dictionary_learning_export(tmp_path):
    cfg = DictionaryConfig(kind="batchtopk", d_in=16, n_latents=32, k=2, n_sources=2)
    cc = train(cfg, SMALL, tcfg(batch_size=64, total_tokens=64 * 20, normalize=True), progress=False)
    cc.save(tmp_path / "cc")
    back = saekit.load(str(tmp_path / "cc"))
    x = torch.stack([SMALL["a"][:200], SMALL["b"][:200]], 1)
    assert type(back) is type(cc) and back.cfg == cc.cfg
    assert torch.equal(back(x), cc(x)) and torch.equal(back.W_dec, cc.W_dec)
    assert not (tmp_path / "cc" / "cfg.json").exists()  # SAELens must not mistake it for an SAE
    from saekit.io.crosscoder import export_dictionary_learning

    # a different activation scale per source travels in their activation normaliser
    with torch.no_grad():
        cc.act_scale.copy_(torch.tensor([[0.7], [1.9]]))
    export_dictionary_learning(cc, tmp_path / "dl")
    state = torch.load(tmp_path / "dl" / "ae.pt", weights_only=True)
    assert state["encoder.weight"].shape == (2, 16, 32) and state["decoder.weight"].shape == (2, 32, 16)
    assert torch.allclose(dictionary_learning_forward(state, x), cc(x), atol=1e-5)
    assert torch.equal(state["decoder.weight"].norm(dim=2).T, cc.W_dec.norm(dim=2))  # the norms the analysis read
    with pytest.raises(ConfigError, match="per-token topk"):
        export_dictionary_learning(saekit.dictionaries.create(cfg.replace(kind="topk")), tmp_path / "dl2")


def dictionary_learning_forward(state, x):
    """dictionary_learning's crosscoder forward (CrossCoder / BatchTopKCrossCoder with CROSSCODER
    code normalisation and its activation normaliser), written from its definition:
    x' = (x - mean)·g_l; f = ReLU(Σ_l x'_l W_l + b); the batch-top-k class keeps f where
    f·Σ_l||D_l f|| > threshold; x̂_l = (f D_l + b_l) / (g_l + 1e-8) + mean_l. The class itself is
    checked by benchmarks/crosscoder_dictlearn_check.py."""
    normalise = not torch.isnan(state["activation_mean"]).any()  # NaN: their marker for "no normaliser"
    g = state["activation_global_scale"][None, :, None]
    mean = state["activation_mean"] if normalise else 0.0
    x = (x - mean) * g if normalise else x
    f = torch.relu(torch.einsum("bld,ldf->bf", x, state["encoder.weight"]) + state["encoder.bias"])
    if "threshold" in state:
        f = f * (f * state["decoder.weight"].norm(dim=2).sum(0) > state["threshold"])
    x_hat = torch.einsum("bf,lfd->bld", f, state["decoder.weight"]) + state["decoder.bias"]
    return x_hat / (g + 1e-8) + mean if normalise else x_hat


@pytest.mark.parametrize(
    "source, n_sources, message",
    [
        ({"a": SMALL["a"], "b": SMALL["b"][:2999]}, 2, "'b' has 2999 rows but 'a' has 3000"),
        ({"a": SMALL["a"]}, 2, "at least two sources"),
        ({"a": SMALL["a"], "b": SMALL["b"][:, :8]}, 2, "'b' has 8 width d but 'a' has 16"),
        (SMALL["a"], 2, "crosscoder over 2 sources but the source is a single"),
        ({"a": SMALL["a"], "b": SMALL["b"], "c": SMALL["b"]}, 2, "holds 3 models .* set n_sources=3"),
    ],
)
def test_bad_crosscoder_input_is_one_sentence(source, n_sources, message):
    cfg = DictionaryConfig(kind="topk", d_in=16, n_latents=8, k=2, n_sources=n_sources)
    with pytest.raises(DataError, match=message) as e:
        train(cfg, source, tcfg(batch_size=64, total_tokens=64), progress=False)
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def test_bad_crosscoder_config_is_one_sentence():
    with pytest.raises(ConfigError, match="kind relu, topk or batchtopk"):
        DictionaryConfig(kind="jumprelu", d_in=16, n_latents=8, n_sources=2)
    with pytest.raises(ConfigError, match="d_out, transcoder and skip are not supported"):
        DictionaryConfig(kind="topk", d_in=16, d_out=8, n_latents=8, k=2, n_sources=2)
    with pytest.raises(ConfigError, match="source_names must be 2 distinct names"):
        DictionaryConfig(kind="topk", d_in=16, n_latents=8, k=2, n_sources=2, source_names=("a", "a"))


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Caches of two tiny models over the same tokens, and one over tokens differing at one place."""
    from tiny_models import tiny_hooked_transformer

    from saekit.activations import build_cache

    root = tmp_path_factory.mktemp("caches")
    tokens = torch.randint(0, 512, (12, 32), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[3, 5] = (changed[3, 5] + 1) % 512
    hp = "blocks.0.hook_resid_post"
    a, b = tiny_hooked_transformer(seed=0), tiny_hooked_transformer(seed=1)
    out = {}
    for name, model, toks in (("a", a, tokens), ("b", b, tokens), ("changed", b, changed)):
        out[name] = build_cache(model, toks, [hp], root / name, shard_tokens=100, progress=False)
    return out


def open_cache(path, **kw):
    from saekit.activations import ActivationCache

    return ActivationCache(path, **{"seed": 3, "buffer_tokens": 128, "chunk_tokens": 8, "progress": False, **kw})


def test_aligned_caches_serve_the_same_tokens_and_train(caches):
    from saekit.training.sources import MultiSource

    same = MultiSource({"a": open_cache(caches["a"]), "again": open_cache(caches["a"])})
    two = MultiSource({"a": open_cache(caches["a"], with_meta=True), "b": open_cache(caches["b"], with_meta=True)})
    for _ in range(5):  # past a fill boundary (64 rows per fill)
        x, _ = same.next_batch(40)
        assert x.shape == (40, 2, 64) and torch.equal(x[:, 0], x[:, 1])
        two.next_batch(40)
        ids = [r.source.last_meta["token_ids"] for r in two.readers]
        assert torch.equal(ids[0], ids[1])
    cfg = DictionaryConfig(kind="topk", d_in=64, n_latents=32, k=4, n_sources=2)
    srcs = {"a": open_cache(caches["a"]), "b": open_cache(caches["b"])}
    cc = train(cfg, srcs, tcfg(batch_size=32, total_tokens=320, normalize=True), progress=False)
    assert cc.cfg.source_names == ("a", "b") and cc.act_scale.shape == (2, 1)


def test_caches_of_different_tokens_are_refused_naming_the_first_mismatch(caches):
    cfg = DictionaryConfig(kind="topk", d_in=64, n_latents=32, k=4, n_sources=2)
    srcs = {"a": open_cache(caches["a"]), "b": open_cache(caches["changed"])}
    # position 0 (BOS) is not cached: row 3·31 + 4 is the changed token
    with pytest.raises(DataError, match=r"differ at row 97: token id \d+ vs \d+"):
        train(cfg, srcs, tcfg(batch_size=32, total_tokens=64), progress=False)
    srcs = {"a": open_cache(caches["a"]), "b": open_cache(caches["b"], seed=4)}
    with pytest.raises(DataError, match="seed=3 and seed=4"):
        train(cfg, srcs, tcfg(batch_size=32, total_tokens=64), progress=False)


def test_export_to_single_model_formats_refuses_a_crosscoder(tmp_path):
    from saekit.io import export

    cfg = DictionaryConfig(kind="topk", d_in=16, n_latents=8, k=2, n_sources=2)
    saekit.dictionaries.create(cfg).save(tmp_path / "cc")
    with pytest.raises(ConfigError, match="is a crosscoder, which saelens has no format for"):
        export(tmp_path / "cc", tmp_path / "out", "saelens")
