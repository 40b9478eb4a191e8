"""Disk cache: exact values, shuffled epochs, bounded memory, kill/resume, corruption errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_model_folder, tiny_hooked_transformer

from saekit.activations import ActivationCache, CacheWriter, build_cache, transcoder_hookpoints
from saekit.errors import ConfigError, DataError

HOOKS = [
    "blocks.0.hook_resid_pre",
    "blocks.0.hook_resid_mid",
    "blocks.0.ln2.hook_normalized",
    "blocks.0.mlp.hook_post",
    "blocks.0.hook_mlp_out",
    "blocks.0.attn.hook_z",
    "blocks.1.hook_resid_post",
]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_hooked_transformer()


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(0)
    t = torch.randint(3, 512, (24, 32), generator=g)
    t[:, 0] = 0  # BOS at every row start, as saekit packs
    return t


def synthetic_cache(
    path: Path, n: int, d: int, shard_tokens: int, doc_len: int = 50, dtype: str = "float32"
) -> torch.Tensor:
    """A cache whose row i holds i in column 0 and whose doc ids are contiguous runs (like real text)."""
    torch.manual_seed(0)
    x = torch.randn(n, d)
    x[:, 0] = torch.arange(n, dtype=torch.float32)
    ids = torch.arange(n)
    w = CacheWriter(path, {"h": d}, dtype=dtype, shard_tokens=shard_tokens)
    w.add({"h": x}, ids % 500, ids // doc_len, ids % 31)
    w.finish()
    return x


def test_cache_equals_run_with_cache(tiny_model, tokens, tmp_path):
    out = build_cache(tiny_model, tokens, HOOKS, tmp_path / "c", shard_tokens=100, batch_size=5)
    _, ref = tiny_model.run_with_cache(tokens)
    keep = torch.ones_like(tokens, dtype=torch.bool)
    keep[:, 0] = False  # BOS dropped by default
    for hp in HOOKS:
        cache = ActivationCache(out, hp)
        expected = ref[hp].flatten(2) if ref[hp].dim() == 4 else ref[hp]
        got = cache.read_all()
        assert got.dtype == torch.float32
        assert torch.equal(got, expected[keep]), hp  # exact at float32
    cache = ActivationCache(out, HOOKS[0])
    assert torch.equal(cache.read_all("token_ids").long(), tokens[keep])
    assert torch.equal(cache.read_all("positions").long(), torch.arange(32).expand_as(tokens)[keep])
    assert torch.equal(cache.read_all("doc_ids"), torch.arange(24).unsqueeze(1).expand_as(tokens)[keep])
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["n_tokens"] == 24 * 31 and m["hookpoints"]["blocks.0.attn.hook_z"]["d"] == 64
    assert [s["n_tokens"] for s in m["shards"]] == [100] * 7 + [44]


def test_manifest_normalisation_stats(tiny_model, tokens, tmp_path):
    hp = "blocks.1.hook_resid_post"
    out = build_cache(tiny_model, tokens, [hp], tmp_path / "c", shard_tokens=64)
    m = json.loads((out / "manifest.json").read_text())
    x = ActivationCache(out).read_all().double()
    assert torch.allclose(torch.tensor(m["hookpoints"][hp]["mean"], dtype=torch.float64), x.mean(0), atol=1e-9)
    assert m["hookpoints"][hp]["mean_sq_norm"] == pytest.approx(float(x.pow(2).sum(1).mean()), rel=1e-9)
    cache = ActivationCache(out, normalize=True, buffer_tokens=256)
    batch = cache.next_batch(len(cache), stop_at_epoch_end=True)
    assert float(batch.pow(2).sum(1).mean()) == pytest.approx(64.0, rel=1e-4)  # E||x||^2 = d
    assert cache.norm_scale == pytest.approx((64 / float(x.pow(2).sum(1).mean())) ** 0.5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_storage(tiny_model, tokens, tmp_path, dtype):
    hp = "blocks.0.hook_mlp_out"
    out = build_cache(tiny_model, tokens[:4], [hp], tmp_path / dtype, dtype=dtype)
    _, ref = tiny_model.run_with_cache(tokens[:4])
    got = ActivationCache(out).read_all()
    assert got.dtype == getattr(torch, dtype)
    assert torch.equal(got, ref[hp][:, 1:].reshape(-1, 64).to(got.dtype))


def test_paired_transcoder_rows_line_up(tiny_model, tokens, tmp_path):
    x_hp, y_hp = transcoder_hookpoints(1)
    out = build_cache(tiny_model, tokens, [x_hp, y_hp, "blocks.0.hook_resid_post"], tmp_path / "c", shard_tokens=90)
    _, ref = tiny_model.run_with_cache(tokens)
    cache = ActivationCache(out, (x_hp, y_hp), buffer_tokens=256, with_meta=True, seed=3)
    assert cache.paired and (cache.d_in, cache.d_out) == (64, 64)
    seen = 0
    for x, y in cache.batches(50, epochs=1):
        meta = cache.last_meta
        rows, pos = meta["doc_ids"], meta["positions"].long()
        # each shuffled row pair is the MLP input and MLP output of the same token, same position
        assert torch.equal(x, ref[x_hp][rows, pos])
        assert torch.equal(y, ref[y_hp][rows, pos])
        assert torch.equal(meta["token_ids"].long(), tokens[rows, pos])
        seen += x.shape[0]
    assert seen == cache.n_tokens


def test_epoch_yields_every_token_once_and_seed_determinism(tmp_path):
    x = synthetic_cache(tmp_path / "c", n=5000, d=8, shard_tokens=700)

    def epoch(seed: int, batch: int = 128) -> torch.Tensor:
        cache = ActivationCache(tmp_path / "c", buffer_tokens=1024, seed=seed)
        ids = torch.cat([b[:, 0] for b in cache.batches(batch, epochs=1)]).long()
        cache.close()
        return ids

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert torch.equal(torch.sort(a).values, torch.arange(5000))  # each row exactly once
    assert torch.equal(torch.sort(c).values, torch.arange(5000))
    assert torch.equal(a, b)  # same seed, same order
    assert not torch.equal(a, c)  # another seed, another order
    assert torch.equal(a, epoch(0, batch=333))  # order does not depend on the batch size
    # the rows themselves come back intact
    cache = ActivationCache(tmp_path / "c", buffer_tokens=1024, seed=0)
    first = cache.next_batch(64)
    assert torch.equal(first, x[first[:, 0].long()])
    # the next epoch is a new permutation of all rows
    cache = ActivationCache(tmp_path / "c", buffer_tokens=1024, seed=0)
    two = torch.cat([b[:, 0] for b in cache.batches(500, epochs=2)]).long()
    assert two.shape[0] == 10000 and torch.equal(torch.sort(two[5000:]).values, torch.arange(5000))
    assert not torch.equal(two[:5000], two[5000:])


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def test_consecutive_doc_ids_nearly_uncorrelated(tmp_path):
    # 60k rows in docs of 50 consecutive rows; the buffer holds 1/15 of the cache
    synthetic_cache(tmp_path / "c", n=60000, d=4, shard_tokens=4000, doc_len=50)
    cache = ActivationCache(tmp_path / "c", buffer_tokens=8192, seed=0, with_meta=True)
    docs = []
    for _ in cache.batches(1000, epochs=1):
        docs.append(cache.last_meta["doc_ids"])
    d = torch.cat(docs)
    assert d.shape[0] == 60000
    shuffled = _corr(d[:-1], d[1:])
    sequential = _corr(torch.arange(60000) // 50, torch.arange(1, 60001) // 50)
    assert sequential > 0.99
    assert abs(shuffled) < 0.05, shuffled
    # two consecutive rows share a document about once per (chunks in a fill) rows, against
    # 49 times in 50 in cache order
    same = (d[:-1] == d[1:]).double().mean().item()
    assert same < 2 * cache.chunk_tokens / cache.fill_tokens < 0.05


def test_exact_resume_of_reader_state(tmp_path):
    synthetic_cache(tmp_path / "c", n=3000, d=8, shard_tokens=500)
    ref = ActivationCache(tmp_path / "c", buffer_tokens=600, seed=5)
    for _ in range(7):
        ref.next_batch(256)
    state = ref.state_dict()
    expected = [ref.next_batch(256) for _ in range(20)]  # crosses fills and an epoch boundary
    ref.close()
    resumed = ActivationCache(tmp_path / "c", buffer_tokens=600, seed=5)
    resumed.next_batch(100)  # a reader that already moved elsewhere
    resumed.load_state_dict(json.loads(json.dumps(state)))  # the state survives JSON
    for want in expected:
        assert torch.equal(resumed.next_batch(256), want)
    assert resumed.epoch >= 1
    with pytest.raises(ConfigError, match="buffer_tokens"):
        ActivationCache(tmp_path / "c", buffer_tokens=800, seed=5).load_state_dict(state)


def test_prefetch_and_sync_give_the_same_batches(tmp_path):
    synthetic_cache(tmp_path / "c", n=2000, d=8, shard_tokens=300)
    a = ActivationCache(tmp_path / "c", buffer_tokens=512, seed=2, prefetch=True)
    b = ActivationCache(tmp_path / "c", buffer_tokens=512, seed=2, prefetch=False)
    for _ in range(12):
        assert torch.equal(a.next_batch(200), b.next_batch(200))
    assert 0.0 <= a.wait_fraction <= 1.0


def _open_files_under(folder: Path) -> list[str]:
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor listdir itself used
            pass
    return [p for p in paths if p.startswith(str(folder))]


def test_reader_hints_each_fill_to_the_kernel_before_reading_it(tmp_path, monkeypatch):
    """Every byte range read was announced with posix_fadvise(WILLNEED) first, and the next fill
    is announced while the current one is consumed (so cold disk reads run in the background)."""
    synthetic_cache(tmp_path / "c", n=2000, d=8, shard_tokens=300)
    events: list[tuple[str, str, int, int]] = []
    real_fadvise, real_preadv = os.posix_fadvise, os.preadv

    def fadvise(fd, offset, length, advice):
        assert advice == os.POSIX_FADV_WILLNEED
        events.append(("hint", os.readlink(f"/proc/self/fd/{fd}"), offset, length))
        return real_fadvise(fd, offset, length, advice)

    def preadv(fd, buffers, offset):
        events.append(("read", os.readlink(f"/proc/self/fd/{fd}"), offset, sum(len(b) for b in buffers)))
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    monkeypatch.setattr(os, "preadv", preadv)
    cache = ActivationCache(tmp_path / "c", buffer_tokens=512, seed=0, prefetch=False, verify=False)
    cache.next_batch(10)  # reads fill 0 only
    hinted = sum(n for kind, _, _, n in events if kind == "hint")
    read = sum(n for kind, _, _, n in events if kind == "read")
    assert read == 256 * 8 * 4  # one fill of 256 rows of 8 float32
    assert hinted == 2 * read  # fill 0 and, ahead of need, fill 1
    assert _open_files_under(tmp_path / "c" / "shards") == []  # neither the fill nor the hints keep files open
    for _ in cache.batches(100, epochs=1):
        pass
    seen: list[tuple[str, int, int]] = []
    for kind, path, off, n in events:
        if kind == "hint":
            seen.append((path, off, off + n))
        else:
            assert any(p == path and lo <= off and off + n <= hi for p, lo, hi in seen), (path, off, n)
    cache.close()


def test_shard_truncated_after_open_names_the_file(tmp_path):
    synthetic_cache(tmp_path / "c", n=2000, d=8, shard_tokens=1000)
    cache = ActivationCache(tmp_path / "c", buffer_tokens=400, seed=0)
    shard = tmp_path / "c" / "shards" / "shard_000001.safetensors"
    shard.write_bytes(shard.read_bytes()[:5000])  # inside the activations of the first rows
    with pytest.raises(DataError, match="shard_000001.safetensors is truncated"):
        for _ in cache.batches(100, epochs=1):
            pass
    cache.close()


def test_shard_deleted_after_open_names_the_file(tmp_path):
    synthetic_cache(tmp_path / "c", n=2000, d=8, shard_tokens=1000)
    cache = ActivationCache(tmp_path / "c", buffer_tokens=400, seed=0)
    (tmp_path / "c" / "shards" / "shard_000001.safetensors").unlink()
    with pytest.raises(DataError, match="shard_000001.safetensors is missing"):
        for _ in cache.batches(100, epochs=1):
            pass
    cache.close()


RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    from saekit.activations import ActivationCache

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    path, buffer_tokens = sys.argv[1], int(sys.argv[2])
    warm = torch.randn(64, 64) @ torch.randn(64, 64)  # torch's own lazy allocations before the baseline
    base = rss("VmRSS")
    cache = ActivationCache(path, buffer_tokens=buffer_tokens, seed=0)
    n = 0
    for batch in cache.batches(1024, epochs=1):
        n += batch.shape[0]
    cache.close()
    print(json.dumps({"base": base, "peak": rss("VmHWM"), "rows": n}))
    """
)


def test_peak_memory_bounded_by_buffer_not_cache_size(tmp_path):
    d, n, buffer_tokens = 128, 1 << 18, 1 << 14
    synthetic_cache(tmp_path / "c", n=n, d=d, shard_tokens=1 << 15)
    cache_bytes = sum(f.stat().st_size for f in (tmp_path / "c" / "shards").iterdir())
    buffer_bytes = buffer_tokens * d * 4
    assert cache_bytes >= 10 * buffer_bytes  # the cache is 16x the buffer
    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(tmp_path / "c"), str(buffer_tokens)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SAEKIT_NO_PROGRESS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["rows"] == n
    growth = r["peak"] - r["base"]
    overhead = 40 << 20  # fixed: metadata, the epoch plan, one batch, allocator slack
    assert growth <= buffer_bytes + overhead, (growth / 2**20, buffer_bytes / 2**20, cache_bytes / 2**20)


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path):
    synthetic_cache(tmp_path / "c", n=1000, d=8, shard_tokens=300)
    shard = tmp_path / "c" / "shards" / "shard_000001.safetensors"
    data = bytearray(shard.read_bytes())
    good = bytes(data)
    data[-7] ^= 0xFF  # flip bits inside the activation data
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="shard_000001.safetensors.*SHA-256"):
        ActivationCache(tmp_path / "c")
    shard.write_bytes(good[:-100])  # truncated
    with pytest.raises(DataError, match="shard_000001.safetensors.*bytes"):
        ActivationCache(tmp_path / "c", verify=False)
    shard.unlink()
    with pytest.raises(DataError, match="shard_000001.safetensors is missing"):
        ActivationCache(tmp_path / "c", verify=False)
    shard.write_bytes(good)
    ActivationCache(tmp_path / "c")  # intact again
    (tmp_path / "c" / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json does not exist"):
        ActivationCache(tmp_path / "c")


def test_incomplete_cache_is_refused_and_settings_change_is_refused(tiny_model, tokens, tmp_path):
    w = CacheWriter(tmp_path / "c", {"h": 4}, shard_tokens=10)
    ids = torch.arange(25)
    w.add({"h": torch.randn(25, 4)}, ids, ids, ids)  # two shards written, not finished
    with pytest.raises(DataError, match="incomplete"):
        ActivationCache(tmp_path / "c")
    with pytest.raises(ConfigError, match="different settings.*dtype"):
        CacheWriter(tmp_path / "c", {"h": 4}, shard_tokens=10, dtype="float16")
    with pytest.raises(ConfigError, match="hookpoint 'nope' is not in cache"):
        build_cache(tiny_model, tokens[:2], ["blocks.0.hook_resid_pre"], tmp_path / "d")
        ActivationCache(tmp_path / "d", "nope")


# -- the `saekit cache` command: kill with SIGKILL, rerun, compare with an uninterrupted run ----


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tiny_model):
    return save_tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny", tiny_model)


def _cache_args(model: Path, out: Path, tokens: int) -> list[str]:
    return [
        "cache",
        "--model",
        str(model),
        "--out",
        str(out),
        "--tokens",
        str(tokens),
        "--hookpoints",
        "blocks.0.hook_resid_post",
        "--transcoder-layer",
        "1",
        "--shard-tokens",
        "100",
        "--batch-size",
        "1",
        "--device",
        "cpu",
    ]


def _listed(out: Path) -> int:
    try:
        return len(json.loads((out / "manifest.json").read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_cli_cache_resumes_after_sigkill_and_matches_uninterrupted(model_folder, tmp_path):
    from saekit.cli import main

    env = {**os.environ, "SAEKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    n = 3000  # 30 shards; one forward of 31 tokens at a time leaves time to kill it mid-way
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "saekit", *_cache_args(model_folder, killed, n)],
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while _listed(killed) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "saekit cache ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    m = json.loads((killed / "manifest.json").read_text())
    assert not m["complete"] and 3 <= len(m["shards"]) < n // 100
    with pytest.raises(DataError, match="incomplete"):
        ActivationCache(killed, "blocks.0.hook_resid_post")

    # rerun the same command on the killed folder (it resumes), and write a clean cache to compare
    assert main(_cache_args(model_folder, killed, n)) == 0
    assert main(_cache_args(model_folder, tmp_path / "clean", n)) == 0
    a = json.loads((killed / "manifest.json").read_text())
    b = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert a["complete"] and a["n_tokens"] == n and len(a["shards"]) == n // 100
    assert a == b  # same shard hashes, same statistics
    for rec in a["shards"]:
        assert (killed / rec["file"]).read_bytes() == (tmp_path / "clean" / rec["file"]).read_bytes()
    assert sorted(p.name for p in (killed / "shards").iterdir()) == sorted(
        p.name for p in (tmp_path / "clean" / "shards").iterdir()
    )
    pair = ActivationCache(killed, transcoder_hookpoints(1), buffer_tokens=1024)
    x, y = pair.next_batch(8)
    assert x.shape == (8, 64) and y.shape == (8, 64)


def test_cli_user_errors_are_one_line(model_folder, tmp_path, capsys):
    from saekit.cli import main

    args = _cache_args(model_folder, tmp_path / "c", 300)
    bad = args[: args.index("--hookpoints") + 1] + ["blocks.9.hook_resid_post"] + args[args.index("--shard-tokens") :]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "blocks.9.hook_resid_post" in err[0]
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses the flag, with the usage line
        main(_cache_args(model_folder, tmp_path / "c", 0))
    assert exit_info.value.code == 2
    assert "--tokens must be a positive count" in capsys.readouterr().err


def test_cli_token_counts_accept_suffixes(capsys):
    # one parser for every count flag (saekit.counts): suffixes accepted, fractions of a token refused
    from saekit.cli import main

    for bad in ("lots", "1.5"):
        with pytest.raises(SystemExit):
            main(["cache", "--model", "m", "--hookpoints", "h", "--out", "o", "--tokens", bad])
        assert "--tokens must be" in capsys.readouterr().err
        assert main(["train", "--activations", "a.safetensors", "--kind", "topk", "--k", "2", "--n-latents", "8", "--tokens", bad, "--out", "o"]) == 2
        assert "--tokens must be" in capsys.readouterr().err


def test_prefetcher_same_items_with_and_without_thread_and_hands_over_errors():
    """The one background producer of the cache reader and the stream (activations/prefetch.py)."""
    import threading

    from saekit.activations.prefetch import Prefetcher

    def items(stop: threading.Event):
        for i in range(5):
            yield torch.full((3,), float(i))
        raise DataError("shard 7 is unreadable")

    for background in (True, False):
        p = Prefetcher(items, background=background)
        got = [p.next() for _ in range(5)]
        assert [int(t[0]) for t in got] == [0, 1, 2, 3, 4]
        with pytest.raises(DataError, match="shard 7"):  # raised in the consumer, not lost with the thread
            p.next()
        p.close()

    def endless(stop: threading.Event):
        i = 0
        while True:
            yield i
            i += 1

    p = Prefetcher(endless, ahead=1)
    assert p.next() == 0
    p.close()  # returns although the producer is blocked putting the next item
    assert p.stop.is_set() and p._thread is None
