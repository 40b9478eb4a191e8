"""The feature browser (`saekit browse`) on a tiny real model with a planted latent, in real chromium.

The planted world: the tiny model's embedding of one token T is scaled up, and latent 0 of a
hand-built ReLU dictionary on blocks.0.hook_resid_pre reads that embedding's direction with a bias
that every other (token, position) stays below. So latent 0 fires exactly where the token is T,
with activation (W_E[T] + W_pos[p])·u - c, computable by hand. The compared dictionary holds the
same rows permuted, so latent 0's match is known and its cosine is 1.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saekit.cli import main
from saekit.config import DictionaryConfig
from saekit.dictionaries import ReLUDictionary
from saekit.io import save_dictionary
from saekit.models import load_model
from saekit.models.store import save_model_folder
from saekit.report.browser import find_chromium
from saekit.report.feature_site import MANIFEST

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import TINY_TL, save_tiny_model_folder  # noqa: E402

HOOK = "blocks.0.hook_resid_pre"
N_LAT = 48
N_TOKENS = 3000
N_CTX = 32


def _planted_token(handle) -> int:
    """A frequent corpus token that decodes to a word-like string (so its explanation is searchable)."""
    from saekit.data import load_corpus, pack_tokens

    toks = pack_tokens(load_corpus("train"), handle.tokenizer, N_CTX, max_rows=100)[:, 1:]
    ids, cnt = toks.unique(return_counts=True)
    for i in cnt.argsort(descending=True).tolist():
        text = handle.tokenizer.decode([int(ids[i])])
        if len(text.strip()) >= 3 and text.strip().isalpha() and 20 <= int(cnt[i]) <= 150:
            return int(ids[i])
    raise AssertionError("no suitable token in the corpus")


def _dictionary(rows: torch.Tensor, b_enc: torch.Tensor, hook: str = HOOK) -> ReLUDictionary:
    cfg = DictionaryConfig(kind="relu", d_in=rows.shape[1], n_latents=rows.shape[0], hook_name=hook)
    sae = ReLUDictionary(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(rows.T)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(rows)
        sae.b_dec.zero_()
    return sae


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    save_tiny_model_folder(root / "model")
    handle = load_model(root / "model")
    T = _planted_token(handle)
    m = handle.model
    with torch.no_grad():
        m.W_E[T] *= 8.0
    save_model_folder(handle, TINY_TL, {"name": "tiny", "variant": "baseline"})
    W_E, W_pos = m.W_E.detach().clone(), m.W_pos.detach()[:N_CTX].clone()
    u = W_E[T] / W_E[T].norm()
    proj = W_E @ u  # [vocab]
    others = torch.cat([proj[:T], proj[T + 1 :]])
    c = float(others.max() + (W_pos @ u).max()) + 0.5  # every other (token, position) stays below
    assert float(proj[T] + (W_pos @ u).min()) > c + 0.5, "the planted token must clear the bias"
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(N_LAT - 1, W_E.shape[1], generator=g)
    rows = torch.cat([u[None], rand / rand.norm(dim=1, keepdim=True)])
    b = torch.cat([torch.tensor([-c]), torch.full((N_LAT - 1,), -1.0)])
    save_dictionary(_dictionary(rows, b), root / "dict")
    perm = torch.randperm(N_LAT, generator=g)
    save_dictionary(_dictionary(rows[perm], b[perm]), root / "other")
    out = root / "site"
    code = main(
        [
            "browse",
            str(root / "dict"),
            "--model",
            str(root / "model"),
            "--out",
            str(out),
            "--tokens",
            str(N_TOKENS),
            "--compare",
            str(root / "other"),
            "--n-ctx",
            str(N_CTX),
            "--neuronpedia-out",
            str(root / "neuronpedia"),
        ]
    )
    assert code == 0
    match = int((perm == 0).nonzero()[0, 0])
    return {
        "root": root,
        "out": out,
        "T": T,
        "u": u,
        "c": c,
        "W_pos": W_pos,
        "match": match,
        "handle": handle,
        "rows": rows,
    }


def _chunk(path: Path):
    """The payload of one saekitChunk(...) data file."""
    text = path.read_text()
    m = re.fullmatch(r'saekitChunk\("[^"]*",(.*)\);\n', text, re.S)
    assert m, f"{path} is not a data chunk"
    return json.loads(m.group(1).replace("<\\/", "</"))


def _details(out: Path, name: str, latent: int) -> dict:
    c = latent // 64
    return _chunk(out / "data" / name / f"latents_{c}.js")[latent - c * 64]


def _tokens_read(handle, n_tokens=N_TOKENS):
    from saekit.data import load_corpus, pack_tokens

    return pack_tokens(load_corpus("train"), handle.tokenizer, N_CTX, max_rows=-(-n_tokens // (N_CTX - 1)))


def test_planted_latent_top_contexts_histogram_and_logits(planted):
    out, T, u, c = planted["out"], planted["T"], planted["u"], planted["c"]
    tokens = _tokens_read(planted["handle"])
    d = _details(out, "dict", 0)
    # by hand: every non-BOS position holding T, activation (W_E[T] + W_pos[p])·u - c
    W_E = planted["handle"].model.W_E.detach()
    rows, cols = (tokens == T).nonzero(as_tuple=True)
    keep = cols > 0
    rows, cols = rows[keep], cols[keep]
    expected = (W_E[T] @ u + planted["W_pos"][cols] @ u - c).numpy()
    assert d["count"] == len(expected) > 0
    order = np.argsort(-expected, kind="stable")
    tops = d["top"]
    assert len(tops) == min(12, len(expected))
    for ctx, j in zip(tops, order):
        assert ctx["tokens"][ctx["focus"]] == T
        assert ctx["value"] == pytest.approx(float(expected[j]), rel=1e-3)
        # highlighted exactly where the window holds T (off-focus positions too)
        for t, a in zip(ctx["tokens"], ctx["acts"]):
            assert (a > 0) == (t == T)
    assert d["max"] == pytest.approx(float(expected.max()), rel=1e-3)
    # histogram: exact counts over the stored edges
    edges = np.linspace(0, d["hist"]["edges_top"], len(d["hist"]["counts"]) + 1)
    want = np.histogram(np.clip(expected, 0, edges[-1]), bins=edges)[0]
    assert d["hist"]["counts"] == want.tolist()
    assert d["hist"]["edges_top"] >= expected.max() > d["hist"]["edges_top"] / 2
    # quantile samples are contexts of T too, sorted from high to low
    vals = [s["value"] for s in d["samples"]]
    assert vals and vals == sorted(vals, reverse=True)
    assert all(s["tokens"][s["focus"]] == T for s in d["samples"])
    # logit effects: W_dec · W_U by hand
    eff = planted["rows"][0] @ planted["handle"].model.W_U.detach()
    up = eff.topk(10)
    assert [t for t, _ in d["logits"]["up"]] == up.indices.tolist()
    assert [v for _, v in d["logits"]["up"]] == pytest.approx(up.values.tolist(), rel=1e-3)
    down = (-eff).topk(10)
    assert [t for t, _ in d["logits"]["down"]] == down.indices.tolist()
    # n-gram explanation is the token itself, exact on held-out text
    assert d["explanation"]["f1"] == pytest.approx(1.0)
    assert planted["handle"].tokenizer.decode([T]) in d["explanation"]["explanation"]
    # the matched latent in the permuted copy, with cosine 1
    assert d["matches"]["other"][0] == planted["match"]
    assert d["matches"]["other"][1] == pytest.approx(1.0, abs=1e-4)
    back = _details(out, "other", planted["match"])
    assert back["matches"]["dict"][0] == 0 and back["count"] == d["count"]


def test_index_rows_and_every_data_file_listed(planted):
    out = planted["out"]
    meta = _chunk(out / "data" / "dict" / "meta.js")
    rows = [r for c in range(meta["index_chunks"]) for r in _chunk(out / "data" / "dict" / f"index_{c}.js")]
    assert [r[0] for r in rows] == list(range(N_LAT))
    col = {name: i for i, name in enumerate(meta["columns"])}
    r0 = rows[0]
    assert r0[col["f1"]] == pytest.approx(1.0) and r0[col["entropy"]] == pytest.approx(0.0, abs=1e-6)
    assert r0[col["abstractness"]] is not None and r0[col["abstractness"]] < 0.5
    listed = set(json.loads((out / MANIFEST).read_text())["files"])
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    assert listed == on_disk


def _dump(url: str) -> str:
    from saekit.report.browser import _run

    return _run(["--virtual-time-budget=15000", "--dump-dom", url], timeout=180)


def _selfcheck(dom: str) -> dict:
    m = re.search(r'<pre id="selfcheck"[^>]*>(.*?)</pre>', dom, re.S)
    assert m and m.group(1), "the page's self-check did not finish"
    import html

    return json.loads(html.unescape(m.group(1)))


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_browser_in_chromium_search_open_follow(planted, tmp_path):
    from saekit.report.browser import screenshot

    out, T = planted["out"], planted["T"]
    word = planted["handle"].tokenizer.decode([T])
    url = (out / "index.html").resolve().as_uri()
    from urllib.parse import quote

    r = _selfcheck(_dump(f"{url}#dict=dict&search={quote(word)}&open=0&follow=other&check=1"))
    assert r["errors"] == [] and r["chunks"]["failed"] == []
    assert r["chunks"]["loaded"] == r["chunks"]["requested"] >= 4
    assert 0 in r["hits"] and r["n_rows"] == N_LAT
    p = r["panel"]
    assert p["dict"] == "dict" and p["open"] == 0 and p["title"] == "dict · latent 0"
    assert p["max_token"] == word.replace("\n", "⏎") and p["highlighted"] >= p["contexts"] > 0
    assert p["histogram_bars"] == 32 and p["logits"] == 20
    assert r["follow_href"] == f"#dict=other&open={planted['match']}"
    a = r["after"]
    assert a["dict"] == "other" and a["open"] == planted["match"] and a["max_token"] == p["max_token"]
    png = screenshot(f"{out}/index.html", tmp_path / "browser.png", height=1100)
    assert png.stat().st_size > 20_000
    # a search for nothing shows no rows
    r2 = _selfcheck(_dump(f"{url}#search=zzqqxx_nothing&check=1"))
    assert r2["hits"] == [] and r2["table_rows"] == 0 and r2["errors"] == []


def test_bad_inputs_one_sentence_nothing_overwritten(planted, tmp_path, capsys):
    root = planted["root"]
    # a dictionary whose hookpoint the model lacks
    bad = tmp_path / "bad_dict"
    save_dictionary(_dictionary(planted["rows"], torch.zeros(N_LAT), hook="blocks.7.hook_resid_pre"), bad)
    base = ["--model", str(root / "model"), "--tokens", "500", "--n-ctx", str(N_CTX)]
    assert main(["browse", str(bad), *base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no hookpoint 'blocks.7.hook_resid_pre'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()
    # an empty dataset
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["browse", str(root / "dict"), *base, "--dataset", str(empty), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "empty" in err and len(err.splitlines()) == 1 and not (tmp_path / "b").exists()
    # an output folder holding something else
    other = tmp_path / "c"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["browse", str(root / "dict"), *base, "--out", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "did not write" in err and len(err.splitlines()) == 1
    assert [p.name for p in other.iterdir()] == ["notes.txt"] and (other / "notes.txt").read_text() == "mine"
    # an earlier browser: refused without --overwrite, replaced with it (only its own files)
    assert main(["browse", str(root / "dict"), *base, "--out", str(planted["out"])]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not list(tmp_path.parent.glob(".*partial*"))


def test_rebuild_with_overwrite_replaces_only_its_files(planted, tmp_path):
    root = planted["root"]
    out = tmp_path / "site"
    args = [
        "browse",
        str(root / "dict"),
        "--model",
        str(root / "model"),
        "--tokens",
        "400",
        "--n-ctx",
        str(N_CTX),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    first = json.loads((out / MANIFEST).read_text())["files"]
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / MANIFEST).read_text())["files"] == first
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    # a stranger's file dropped into the browser folder stops a rebuild and survives it
    (out / "data" / "keep.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 2
    assert (out / "data" / "keep.txt").read_text() == "mine"


def test_docs_example_runs(planted, tmp_path, monkeypatch):
    import contextlib
    import io

    docs = Path(__file__).resolve().parents[1] / "docs" / "browser.md"
    text = docs.read_text()
    blocks = re.findall(r"<!-- runnable -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1 == text.count("```python")
    root = planted["root"]
    ns = {"dict_dir": str(root / "dict"), "model_dir": str(root / "model"), "other_dir": str(root / "other")}
    monkeypatch.chdir(tmp_path)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(blocks[0], str(docs), "exec"), ns)
    printed = buf.getvalue().splitlines()[-1]
    assert printed == "['assets', 'data', 'index.html', 'saekit_browser.json']"
    assert f"prints `{printed}`" in text
    assert sorted(p.name for p in (tmp_path / "browser" / "data").iterdir()) == ["dict", "other"]


def test_streamed_stats_match_brute_force_over_growing_ranges():
    """Histogram counts stay exact while the range doubles batch after batch; top-k and windows exact."""
    from saekit.report.latent_stats import LatentStats

    g = torch.Generator().manual_seed(1)
    n_ctx, n_lat = 16, 5
    batches = []
    for b in range(6):  # the scale grows 4x per batch, so every latent's range has to double repeatedly
        z = torch.relu(torch.randn(3, n_ctx, n_lat, generator=g)) * (4.0**b)
        z[..., 4] = 0  # a latent that never fires
        batches.append(z)
    st = LatentStats(n_lat, n_top=5, n_samples=7, before=2, after=1, n_bins=8)
    for b, z in enumerate(batches):
        st.update(z, b * 3 * n_ctx)
    st.freeze()
    allz = torch.cat(batches).reshape(-1, n_lat).numpy()
    for i in range(4):
        v = allz[:, i]
        fired = v[v > 0]
        assert st.count[i] == len(fired) and st.max[i] == pytest.approx(fired.max())
        edges = st.hist_edges(i)
        assert edges[-1] >= fired.max() > edges[-1] / 2
        assert st.hist[i].tolist() == np.histogram(fired, bins=np.array(edges))[0].tolist()
        order = np.argsort(-v, kind="stable")[:5]
        assert sorted(st.top.positions[i].tolist()) == sorted(order.tolist())
        for j in range(5):  # each window is the latent's activation around its position, NaN off the row
            p = int(st.top.positions[i, j])
            row, col = divmod(p, n_ctx)
            for k, off in enumerate(range(-2, 2)):
                c = col + off
                want = allz[row * n_ctx + c, i] if 0 <= c < n_ctx else float("nan")
                assert st.top.windows[i, j, k] == pytest.approx(want, nan_ok=True)
        # the reservoir: 7 distinct firing positions
        res = st.samples.positions[i]
        assert len(set(res.tolist())) == 7 and all(v[p] > 0 for p in res)
        assert np.allclose(st.samples.values[i], v[res])
    assert st.count[4] == 0 and (st.top.positions[4] == -1).all() and st.hist[4].sum() == 0


@pytest.mark.slow
def test_16k_latent_build_stays_under_the_documented_memory_bound(planted, tmp_path):
    """docs/browser.md states peak RSS under 3 GB for 16k latents; a short real run in a fresh process.
    The peak is the process's own memory's (VmHWM): ru_maxrss of a child started by vfork inherits the
    parent's peak at exec, so it reported the pytest worker's 6.5 GB once other tests had grown it."""
    import subprocess

    from saekit.dictionaries import create

    cfg = DictionaryConfig(kind="topk", d_in=64, n_latents=16384, k=32, hook_name=HOOK)
    save_dictionary(create(cfg, seed=0), tmp_path / "wide")
    root = planted["root"]
    code = (
        "import sys; from saekit.cli import main; "
        f"rc = main(['browse', {str(tmp_path / 'wide')!r}, '--model', {str(root / 'model')!r}, '--out', "
        f"{str(tmp_path / 'site')!r}, '--tokens', '800', '--n-ctx', '{N_CTX}']); "
        "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')); "
        "print('RSS_MB', int(hwm.split()[1]) / 1024); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rss = float(re.search(r"RSS_MB ([\d.]+)", proc.stdout).group(1))
    assert rss < 3 * 1024, f"peak RSS {rss:.0f} MB"
    assert "3 GB" in (Path(__file__).resolve().parents[1] / "docs" / "browser.md").read_text()
    meta = _chunk(tmp_path / "site" / "data" / "wide" / "meta.js")
    assert meta["n_latents"] == 16384 and meta["index_chunks"] == 8


# The keys of SAEDashboard's NeuronpediaDashboardBatch / Feature / Activation .to_dict()
# (sae_dashboard/neuronpedia/neuronpedia_dashboard.py), what Neuronpedia's converter reads.
NP_BATCH = {"model_id", "layer", "sae_set", "sae_id_suffix", "features"}
NP_FEATURE = {
    "feature_index", "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
    "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
    "neg_str", "neg_values", "pos_str", "pos_values", "frac_nonzero", "freq_hist_data_bar_values",
    "freq_hist_data_bar_heights", "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
    "n_prompts_total", "n_tokens_in_prompt", "dataset", "decoder_weights_dist", "activations",
}  # fmt: skip
NP_ACTIVATION = {"bin_min", "bin_max", "bin_contains", "tokens", "values", "qualifying_token_index"}


def test_neuronpedia_export_has_saedashboards_batch_fields_and_the_planted_latent(planted):
    root, T = planted["root"], planted["T"]
    tok = planted["handle"].tokenizer
    out = root / "neuronpedia"
    assert json.loads((out / "saekit_neuronpedia.json").read_text())["files"] == ["batch-0.json"]
    batch = json.loads((out / "batch-0.json").read_text())
    assert set(batch) == NP_BATCH and batch["layer"] == 0 and batch["sae_set"] == "dict"
    feats = batch["features"]
    assert [f["feature_index"] for f in feats] == list(range(N_LAT))
    assert all(set(f) == NP_FEATURE for f in feats)
    f0, d0 = feats[0], _details(planted["out"], "dict", 0)
    assert f0["n_tokens_in_prompt"] == N_CTX and f0["n_prompts_total"] == len(_tokens_read(planted["handle"]))
    assert f0["frac_nonzero"] == pytest.approx(d0["density"]) and sum(f0["freq_hist_data_bar_heights"]) == d0["count"]
    assert f0["pos_str"] == [tok.decode([t]) for t, _ in d0["logits"]["up"]]
    assert f0["neg_values"] == pytest.approx([v for _, v in d0["logits"]["down"]]) and max(f0["neg_values"]) < 0
    assert sum(f0["logits_hist_data_bar_heights"]) == planted["handle"].model.W_U.shape[1]
    acts = f0["activations"]
    assert len(acts) == len(d0["top"]) > 0 and all(set(a) == NP_ACTIVATION for a in acts)
    a = acts[0]  # the top context: the planted token at the qualifying index, at the latent's max
    assert a["tokens"][a["qualifying_token_index"]] == tok.decode([T])
    assert a["values"][a["qualifying_token_index"]] == pytest.approx(d0["max"]) == pytest.approx(a["bin_max"])
    assert a["bin_min"] == -1 and a["bin_contains"] == -1


def test_neuronpedia_out_holding_other_files_is_refused(planted, tmp_path, capsys):
    root = planted["root"]
    other = tmp_path / "np"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    argv = ["browse", str(root / "dict"), "--model", str(root / "model"), "--tokens", "300", "--n-ctx", str(N_CTX),
            "--out", str(tmp_path / "site"), "--neuronpedia-out", str(other)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "did not write" in err and len(err.splitlines()) == 1
    assert [p.name for p in other.iterdir()] == ["notes.txt"] and not (tmp_path / "site").exists()
