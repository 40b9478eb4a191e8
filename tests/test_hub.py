"""Hub code paths without the network.

Loading: a real Hugging Face cache layout (blobs/, snapshots/<commit>/, refs/main) read through
``snapshot_download`` with HF_HUB_OFFLINE=1. Publishing: huggingface_hub's real HfApi pointed at
a local HTTP server started here, which speaks the Hub's create-repo / preupload / commit
endpoints and records every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants, metadata_load, scan_cache_dir

from saekit.config import DictionaryConfig
from saekit.dictionaries import create
from saekit.errors import DataError, SaekitError
from saekit.io import load, push_to_hub, save_dictionary

TOKEN = "hf_saekitTestToken0123456789"
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")


class FakeHub:
    """The slice of the Hub API that create_repo / create_branch / upload_folder use."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.repos: dict[str, dict] = {}
        self.commits: list[dict] = []
        self.fail_commit = False
        self.validated: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            error_code = ""

            def _reply(self, status: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                if self.error_code:
                    self.send_header("X-Error-Code", self.error_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "agent": self.headers.get("User-Agent", ""),
                        "body": body,
                    }
                )
                status, obj = hub.handle(self.path.split("?")[0], body)
                self._reply(status, obj)

            def do_GET(self) -> None:
                self._download(head=False)

            def do_HEAD(self) -> None:
                self._download(head=True)

            def _download(self, head: bool) -> None:
                hub.requests.append(
                    {"method": "HEAD" if head else "GET", "path": self.path, "auth": self.headers.get("Authorization")}
                )
                got = hub.serve(self.path.split("?")[0])
                if got is None:
                    self.error_code = "RepoNotFound"  # the header the real Hub sends for unknown repos
                    self._reply(404, {"error": "Repository not found"})
                    return
                body, headers = got
                self.send_response(200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, path: str, body: bytes) -> tuple[int, dict]:
        if path == "/api/repos/create":
            req = json.loads(body)
            repo = f"{req['organization']}/{req['name']}"
            if repo in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo}"}
            self.repos[repo] = {"files": {}, "visibility": req.get("visibility"), "branches": {"main"}}
            return 200, {"url": f"{self.url}/{repo}", "name": repo}
        if path == "/api/validate-yaml":  # upload_folder checks a README's metadata first
            content = json.loads(body)["content"]
            try:
                yaml.safe_load(content.split("---")[1])
            except (yaml.YAMLError, IndexError) as e:
                return 400, {"errors": [{"message": str(e)}]}
            self.validated.append(content)
            return 200, {"warnings": []}
        m = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)$", path)
        if not m or m.group(1) not in self.repos:
            return 404, {"error": "Repository not found"}
        repo, action, rev = m.groups()
        if action == "branch":
            self.repos[repo]["branches"].add(rev)
            return 200, {}
        if action == "preupload":
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        if self.fail_commit:
            # 413 rather than a 5xx: huggingface_hub retries 5xx with backoff (~23 s), same outcome
            return 413, {"error": "Payload Too Large"}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        files = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
        oid = hashlib.sha1(body).hexdigest()
        self.commits.append({"repo": repo, "revision": rev, "summary": header.get("summary"), "files": files})
        self.repos[repo]["files"].update(files)
        self.repos[repo]["sha"] = oid
        return 200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid}

    def serve(self, path: str) -> tuple[bytes, dict] | None:
        """Read side: repo info, the file tree and file downloads (what snapshot_download uses)."""
        m = re.match(r"^/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?$", path)
        if m and m.group(1) in self.repos and "sha" in self.repos[m.group(1)]:
            repo = self.repos[m.group(1)]
            if m.group(2) == "revision":
                info = {"id": m.group(1), "sha": repo["sha"], "siblings": [{"rfilename": f} for f in repo["files"]]}
                return json.dumps(info).encode(), {"Content-Type": "application/json"}
            tree = [
                {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for f, b in sorted(repo["files"].items())
            ]
            return json.dumps(tree).encode(), {"Content-Type": "application/json"}
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m and m.group(1) in self.repos and m.group(3) in self.repos[m.group(1)]["files"]:
            body = self.repos[m.group(1)]["files"][m.group(3)]
            headers = {"X-Repo-Commit": self.repos[m.group(1)]["sha"], "ETag": f'"{hashlib.sha1(body).hexdigest()}"'}
            return body, headers
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch):
    server = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets offline for every other test
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield server
    server.close()


def _dictionary(seed: int, hook: str, kind: str = "topk") -> torch.nn.Module:
    cfg = DictionaryConfig(kind=kind, d_in=8, n_latents=32, k=4, hook_name=hook, model_name="tiny-baseline")
    return create(cfg, seed=seed)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    for i, hook in enumerate(HOOKS):
        extra = {
            "metrics": {"fvu": 0.1 + i, "l0": 4.0, "dead_fraction": 0.0},
            "model": {"name": "tiny", "variant": "l1_weights"},
        }
        save_dictionary(_dictionary(i, hook), run / hook, extra=extra, feature_density=torch.full((32,), 0.1))
    (run / "run.json").write_text('{"note": "run summary"}')
    (run / HOOKS[0] / "metrics.jsonl").write_text('{"step": 1, "fvu": 0.5}\n')
    (run / HOOKS[0] / "checkpoint.pt").write_bytes(b"trainer state inside a dictionary folder")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_10.pt").write_bytes(b"optimizer state, not for publishing")
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_run_one_commit_every_file_and_model_card(hub, run_dir, tmp_path):
    before = _snapshot(run_dir)
    url = push_to_hub(run_dir, "org/sae-run", endpoint=hub.url)
    assert url.startswith(f"{hub.url}/org/sae-run/commit/")
    creates = [r for r in hub.requests if r["path"] == "/api/repos/create"]
    assert len(creates) == 1 and json.loads(creates[0]["body"])["name"] == "sae-run"
    assert len(hub.commits) == 1, "the whole run must go up in one commit"
    files = hub.commits[0]["files"]
    expected = {
        f"{h}/{n}"
        for h in HOOKS
        for n in ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "saekit.json")
    }
    expected |= {"run.json", f"{HOOKS[0]}/metrics.jsonl"}
    assert set(files) == expected | {"README.md"}  # no checkpoints
    for name in expected:
        assert files[name] == before[name], name
    # token: sent to the endpoint, never written anywhere locally
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests if r["method"] == "POST")
    assert _snapshot(run_dir) == before  # local files untouched, no README written there
    assert not any(TOKEN.encode() in content for content in files.values())

    assert hub.validated == [files["README.md"].decode()]
    card_file = tmp_path / "README.md"
    card_file.write_bytes(files["README.md"])
    meta = metadata_load(card_file)
    assert meta["library_name"] == "saekit"
    assert "saekit" in meta["tags"] and "sparse-autoencoder" in meta["tags"]
    assert meta["hookpoints"] == list(HOOKS)
    assert meta["model_variant"] == "l1_weights"
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "saekit"
    assert "| fvu |" in card.text and "0.1" in card.text and "1.1" in card.text
    assert 'saekit.load("org/sae-run", subfolder="blocks.0.hook_resid_post")' in card.text
    assert "SAE.load_from_disk" in card.text


def test_push_to_branch_creates_it(hub, run_dir):
    push_to_hub(run_dir, "org/sae-run", endpoint=hub.url, revision="v2", private=True)
    assert "v2" in hub.repos["org/sae-run"]["branches"]
    assert hub.repos["org/sae-run"]["visibility"] == "private"
    assert [c["revision"] for c in hub.commits] == ["v2"]


def test_push_existing_repo_and_dictionary_method(hub):
    sae = _dictionary(5, "blocks.3.hook_mlp_out", kind="jumprelu")
    sae.push_to_hub("org/one", endpoint=hub.url)
    sae.push_to_hub("org/one", endpoint=hub.url, commit_message="again")  # repo exists: 409 is fine
    assert len(hub.commits) == 2 and hub.commits[1]["summary"] == "again"
    assert "blocks.3.hook_mlp_out/sae_weights.safetensors" in hub.commits[0]["files"]


def test_failed_upload_keeps_local_files_and_says_what_to_retry(hub, run_dir):
    hub.fail_commit = True
    before = _snapshot(run_dir)
    with pytest.raises(SaekitError) as e:
        push_to_hub(run_dir, "org/sae-run", endpoint=hub.url)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".")
    assert "failed while uploading (HTTP 413: Payload Too Large)" in msg
    assert f"retry with `saekit push {run_dir} org/sae-run`" in msg
    assert "local files are unchanged" in msg and TOKEN not in msg
    assert hub.commits == [] and _snapshot(run_dir) == before


def test_push_refused_offline_before_any_request(run_dir, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SaekitError, match="HF_HUB_OFFLINE=1 is set"):
        push_to_hub(run_dir, "org/sae-run", endpoint="http://127.0.0.1:9")


def test_push_refuses_a_folder_it_cannot_read(hub, run_dir):
    (run_dir / HOOKS[1] / "sae_weights.safetensors").write_bytes(b"truncated")
    with pytest.raises(DataError, match="not a readable safetensors file"):
        push_to_hub(run_dir, "org/sae-run", endpoint=hub.url)
    assert hub.requests == []


def test_cli_push_uses_env_token_and_never_prints_it(hub, run_dir):
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "saekit",
            "push",
            str(run_dir),
            "org/cli-run",
            "--private",
            "--message",
            "first",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert "published" in proc.stdout and "org/cli-run" in proc.stdout
    assert hub.repos["org/cli-run"]["visibility"] == "private"
    assert len(hub.commits) == 1 and hub.commits[0]["summary"] == "first"


# ---------------------------------------------------------------------- loading from the cache


def _populate_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str) -> None:
    """Write the documented HF cache layout: blobs by sha256, snapshot symlinks, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for rel, content in files.items():
        sha = hashlib.sha256(content).hexdigest()
        blob = repo / "blobs" / sha
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_load_from_local_cache_offline(tmp_path, run_dir, monkeypatch):
    assert constants.HF_HUB_OFFLINE, "conftest runs tests with HF_HUB_OFFLINE=1"
    cache = tmp_path / "hub-cache"
    files = {k: v for k, v in _snapshot(run_dir).items() if not k.startswith("checkpoints")}
    _populate_cache(cache, "org/sae-run", files, commit="a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    info = scan_cache_dir(cache)  # huggingface_hub itself recognises the layout
    assert [r.repo_id for r in info.repos] == ["org/sae-run"] and not info.warnings

    for i, hook in enumerate(HOOKS):
        sae = load("org/sae-run", subfolder=hook)
        ref = _dictionary(i, hook)
        assert sae.cfg == ref.cfg
        for name, t in ref.state_dict().items():
            assert torch.equal(sae.state_dict()[name], t), name
    with pytest.raises(DataError, match="holds 2 dictionaries"):
        load("org/sae-run")
    with pytest.raises(DataError, match="no subfolder 'blocks.9.hook_resid_post'"):
        load("org/sae-run", subfolder="blocks.9.hook_resid_post")


def test_partly_cached_repo_offline(tmp_path, run_dir, monkeypatch):
    """Only one subfolder downloaded earlier: that one loads offline, the whole repo says why not."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    cache = tmp_path / "hub-cache"
    files = {k: v for k, v in _snapshot(run_dir).items() if not k.startswith("checkpoints")}
    commit = "c" * 40
    _populate_cache(cache, "org/part", {k: v for k, v in files.items() if k.startswith(HOOKS[0])}, commit)
    # the file listing an earlier online snapshot_download stored beside the cache
    listing = {k: TreeCacheEntry(size=len(v), blob_id=hashlib.sha1(v).hexdigest()) for k, v in files.items()}
    write_tree_cache(str(cache / "models--org--part"), commit, listing)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert load("org/part", subfolder=HOOKS[0]).cfg.hook_name == HOOKS[0]
    with pytest.raises(DataError, match="only partly in the local Hugging Face cache") as e:
        load("org/part")
    assert "\n" not in str(e.value)


def test_load_unknown_repo_online(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as e:
        load("org/does-not-exist", subfolder="blocks.0.hook_resid_post")
    assert str(e.value) == (
        "there is no local folder org/does-not-exist, and hub repo org/does-not-exist was not found "
        "(or is private: log in with `hf auth login` or set HF_TOKEN)."
    )
    assert any(r["path"].startswith("/api/models/org/does-not-exist/revision/main") for r in hub.requests)


def test_load_uncached_repo_offline_is_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DataError) as e:
        load("org/not-cached")
    msg = str(e.value)
    assert msg == (
        "there is no local folder org/not-cached, and org/not-cached is not in the local Hugging Face "
        "cache and HF_HUB_OFFLINE=1 is set; unset HF_HUB_OFFLINE to download it."
    )


def test_publishing_requests_come_from_the_installed_huggingface_hub(hub, run_dir):
    # guard: the push goes through the installed client (its user agent names its version on
    # every request), not a stand-in, and not through hand-written HTTP.
    push_to_hub(run_dir, "org/agent", endpoint=hub.url)
    posts = [r for r in hub.requests if r["method"] == "POST"]
    assert posts, "saekit sent no request to the Hub"
    for r in posts:
        # the installed client names itself and its version ("hf_hub/X" in 1.x+, "huggingface_hub/X" before)
        assert re.search(rf"(hf_hub|huggingface_hub)/{re.escape(huggingface_hub.__version__)}\b", r["agent"]), r["agent"]


def test_trained_run_publish_then_load_offline(hub, tmp_path, monkeypatch):
    """saekit.train -> push (checkpoint left out) -> Hub files in a local cache -> load offline."""
    import saekit

    torch.manual_seed(0)
    X = torch.randn(2048, 16) * 3 + 1
    cfgs = [
        saekit.DictionaryConfig(kind=kind, d_in=16, n_latents=64, k=4, hook_name="blocks.0.hook_resid_post")
        for kind in ("topk", "relu")
    ]
    run = tmp_path / "run"
    tcfg = saekit.TrainConfig(batch_size=256, total_tokens=2048, normalize=True, out_dir=str(run), device="cpu")
    saes = saekit.train(cfgs, X, tcfg)
    assert all(float(s.act_scale) != 1.0 for s in saes)  # the fold on save is exercised
    push_to_hub(run, "org/trained", endpoint=hub.url)
    files = hub.repos["org/trained"]["files"]
    assert not any(name.endswith(".pt") for name in files)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    _populate_cache(tmp_path / "cache", "org/trained", files, commit="b" * 40)
    subfolders = sorted({name.split("/")[0] for name in files if "/" in name})
    assert len(subfolders) == 2
    for sub in subfolders:
        loaded = load("org/trained", subfolder=sub)
        sae = next(s for s in saes if s.cfg.kind == loaded.cfg.kind)
        with torch.no_grad():
            torch.testing.assert_close(loaded(X[:64]), sae(X[:64]), atol=1e-4, rtol=1e-4)
        assert loaded.saekit_meta["metrics"]["l0"] > 0


def test_publish_then_download_online_then_load_offline(hub, run_dir, tmp_path, monkeypatch):
    """The whole loop through huggingface_hub: push, snapshot_download one subfolder, go offline."""
    push_to_hub(run_dir, "org/loop", endpoint=hub.url)
    # what HF_ENDPOINT=<url> sets when huggingface_hub is imported
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    sae = load("org/loop", subfolder=HOOKS[1])  # online: downloads only that subfolder and the card
    downloads = [r["path"] for r in hub.requests if r["method"] == "GET" and "/resolve/" in r["path"]]
    assert downloads and all(f"/{HOOKS[1]}/" in p or p.endswith("/README.md") for p in downloads)
    ref = _dictionary(1, HOOKS[1])
    assert all(torch.equal(sae.state_dict()[k], v) for k, v in ref.state_dict().items())

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    n = len(hub.requests)
    again = load("org/loop", subfolder=HOOKS[1])  # from the cache, no request
    assert len(hub.requests) == n and torch.equal(again.W_dec, ref.W_dec)
    with pytest.raises(DataError, match="only partly in the local Hugging Face cache"):
        load("org/loop", subfolder=HOOKS[0])
