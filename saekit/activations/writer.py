"""Disk cache writer: one model pass -> fixed-size safetensors shards + a JSON manifest.

Layout of a cache folder::

    manifest.json                     model, hookpoints, dtype, d, token count, per-shard SHA-256,
                                      normalisation statistics; "complete": false while writing
    shards/shard_000000.safetensors   {hookpoint: [n, d], token_ids, doc_ids, positions}

Every shard and every manifest update is atomic, and the manifest lists a shard only after
the shard is on disk, so a killed run leaves a prefix of complete shards. A rerun with the same
settings checks those shards (SHA-256), recomputes the statistics from them and continues at
the next token; the model processes the same fixed batches of sequences as before, so the
finished cache is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from saekit.activations.hookpoints import HookpointReader, bos_token_id, keep_mask, special_token_ids
from saekit.activations.shards import DTYPES, META_KEYS, ShardFile, sha256_file, write_shard
from saekit.errors import ConfigError, DataError
from saekit.fileutil import atomic_write_json, read_json
from saekit.jsonsafe import json_safe
from saekit.progress import token_bar
from saekit.runfolder import claim, is_blank, is_owned, prepare_output, release

FORMAT = "saekit-activation-cache"
VERSION = 1
MANIFEST = "manifest.json"


def shard_name(i: int) -> str:
    return f"shards/shard_{i:06d}.safetensors"


class _Stats:
    """Running float64 sums per hookpoint: mean vector and mean squared norm."""

    def __init__(self, dims: dict[str, int]):
        self.sum = {hp: torch.zeros(d, dtype=torch.float64) for hp, d in dims.items()}
        self.sq = dict.fromkeys(dims, 0.0)
        self.n = 0

    def add_shard(self, tensors: dict[str, torch.Tensor], n: int, block: int = 8192) -> None:
        for hp in self.sum:
            for i in range(0, n, block):  # float64 copies of a block, not of the whole shard
                x = tensors[hp][i : min(n, i + block)].double()
                self.sum[hp] += x.sum(0)
                self.sq[hp] += float((x * x).sum())
        self.n += n

    def to_json(self) -> dict[str, Any]:
        out = {}
        for hp, s in self.sum.items():
            d = s.numel()
            msq = self.sq[hp] / max(self.n, 1)
            out[hp] = {
                "mean": (s / max(self.n, 1)).tolist(),
                "mean_sq_norm": msq,
                # multiply activations by this to get E||x||^2 = d (foldable into dictionary weights)
                "norm_scale": math.sqrt(d / msq) if msq > 0 else 1.0,
            }
        return out


class CacheWriter:
    """Appends activation rows; writes a shard every ``shard_tokens`` rows; resumable.

    ``fingerprint`` identifies what is being cached (model, tokens, settings): a rerun with the
    same fingerprint resumes, a different one is refused unless ``overwrite``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        dims: dict[str, int],
        *,
        dtype: str = "float32",
        shard_tokens: int = 65536,
        fingerprint: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
        overwrite: bool = False,
    ):
        if dtype not in DTYPES:
            raise ConfigError(f"dtype {dtype!r} is not supported; expected one of {', '.join(DTYPES)}.")
        if not isinstance(shard_tokens, int) or shard_tokens <= 0:
            raise ConfigError(f"shard_tokens must be a positive integer, got {shard_tokens!r}.")
        self.out = Path(out_dir)
        self.dims = dict(dims)
        self.dtype = dtype
        self.shard_tokens = shard_tokens
        self.fingerprint = {
            "hookpoints": self.dims,
            "dtype": dtype,
            "shard_tokens": shard_tokens,
            **(fingerprint or {}),
        }
        self.info = info or {}
        self.shards: list[dict[str, Any]] = []
        self.stats = _Stats(self.dims)
        self.complete = False
        self.lock = claim(self.out)  # one writer per cache folder; released by finish()/close()
        try:
            if overwrite:  # deletes only a cache's own files; refuses a folder holding others
                prepare_output(self.out, "cache", overwrite=True)
            self._resume()
        except BaseException:
            self.close()
            raise
        self._buf = {hp: torch.empty(shard_tokens, d, dtype=DTYPES[dtype]) for hp, d in self.dims.items()}
        self._buf["token_ids"] = torch.empty(shard_tokens, dtype=torch.int32)
        self._buf["doc_ids"] = torch.empty(shard_tokens, dtype=torch.int64)
        self._buf["positions"] = torch.empty(shard_tokens, dtype=torch.int32)
        self._fill = 0

    @property
    def tokens_written(self) -> int:
        return sum(s["n_tokens"] for s in self.shards)

    # -- resume -----------------------------------------------------------------------------
    def _resume(self) -> None:
        path = self.out / MANIFEST
        if not path.exists():
            if not is_blank(self.out):
                raise ConfigError(
                    f"output folder {self.out} is not empty and holds no cache manifest; "
                    "choose a new folder or overwrite."
                )
            (self.out / "shards").mkdir(parents=True, exist_ok=True)
            self._remove_unlisted()  # a start killed inside its first shard write
            return
        old = read_json(path, "cache manifest")
        if old.get("format") != FORMAT or old.get("fingerprint") != json_safe(self.fingerprint):
            diff = _first_difference(old.get("fingerprint") or {}, json_safe(self.fingerprint))
            raise ConfigError(
                f"output folder {self.out} holds a cache built with different settings ({diff}); "
                "choose a new folder or overwrite."
            )
        for rec in old["shards"]:
            ok = (self.out / rec["file"]).is_file() and (self.out / rec["file"]).stat().st_size == rec["bytes"]
            if ok:
                ok = sha256_file(self.out / rec["file"]) == rec["sha256"]
            if not ok:
                warnings.warn(
                    f"cache shard {self.out / rec['file']} does not match the manifest; rewriting from it.",
                    stacklevel=3,
                )
                break
            shard = ShardFile(self.out / rec["file"], rec["bytes"])
            self.stats.add_shard({hp: shard.read_all(hp) for hp in self.dims}, rec["n_tokens"])
            shard.close()
            self.shards.append(rec)
        self.complete = bool(old.get("complete")) and len(self.shards) == len(old["shards"])
        self._remove_unlisted()

    def _remove_unlisted(self) -> None:
        """Delete the cache's own files in shards/ that no kept shard lists: half-written temp
        files (saekit's and safetensors'), and shards written after the last manifest."""
        listed = {s["file"] for s in self.shards}
        for f in (self.out / "shards").iterdir():
            rel = Path("shards") / f.name
            if rel.as_posix() not in listed and f.is_file() and is_owned(rel, "cache"):
                f.unlink()

    # -- writing ----------------------------------------------------------------------------
    def add(
        self,
        acts: dict[str, torch.Tensor],
        token_ids: torch.Tensor,
        doc_ids: torch.Tensor,
        positions: torch.Tensor,
    ) -> None:
        """Append rows: ``acts[hp]`` is [n, d]; the metadata tensors are [n]."""
        n = token_ids.shape[0]
        done = 0
        while done < n:
            take = min(n - done, self.shard_tokens - self._fill)
            sl = slice(self._fill, self._fill + take)
            for hp in self.dims:
                self._buf[hp][sl] = acts[hp][done : done + take].to(self._buf[hp].dtype)
            self._buf["token_ids"][sl] = token_ids[done : done + take].to(torch.int32)
            self._buf["doc_ids"][sl] = doc_ids[done : done + take].to(torch.int64)
            self._buf["positions"][sl] = positions[done : done + take].to(torch.int32)
            self._fill += take
            done += take
            if self._fill == self.shard_tokens:
                self._flush()

    def _flush(self) -> None:
        n = self._fill
        if n == 0:
            return
        tensors = {k: v[:n] for k, v in self._buf.items()}
        name = shard_name(len(self.shards))
        try:
            sha, nbytes = write_shard(self.out / name, tensors)
        except DataError as e:  # a full disk: say what is safe
            raise DataError(
                f"{e} The {len(self.shards)} shard(s) before it are complete; free space and rerun the same command to continue."
            ) from None
        self.stats.add_shard(tensors, n)
        self.shards.append({"file": name, "n_tokens": n, "sha256": sha, "bytes": nbytes})
        self._fill = 0
        self._write_manifest(complete=False)

    def finish(self) -> dict[str, Any]:
        self._flush()
        if self.tokens_written == 0:
            raise DataError("no activation rows were written: the token source produced no kept tokens.")
        self.complete = True
        manifest = self._write_manifest(complete=True)
        self.close()
        return manifest

    def close(self) -> None:
        """Give back the folder's lock (finish() does this; call it when abandoning a writer)."""
        if self.lock is not None:
            release(self.lock)
            self.lock = None

    def _write_manifest(self, complete: bool) -> dict[str, Any]:
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "complete": complete,
            **json_safe(self.info),
            "hookpoints": {
                hp: {"d": d, **stat}
                for (hp, d), stat in zip(self.dims.items(), self.stats.to_json().values(), strict=True)
            },
            "dtype": self.dtype,
            "shard_tokens": self.shard_tokens,
            "n_tokens": self.tokens_written,
            "meta_keys": list(META_KEYS),
            "shards": self.shards,
            "fingerprint": json_safe(self.fingerprint),
        }
        atomic_write_json(self.out / MANIFEST, manifest)
        return manifest


def _first_difference(a: dict, b: dict) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} there vs {b.get(key)!r} now"
    return "format"


def model_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over parameter names and bytes: a resumed cache must come from the same weights."""
    h = hashlib.sha256()
    for name, p in module.state_dict().items():
        h.update(name.encode())
        t = p.detach().cpu().contiguous().reshape(-1)
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tokens_fingerprint(tokens: torch.Tensor, doc_ids: torch.Tensor | None) -> str:
    h = hashlib.sha256(tokens.to(torch.int64).contiguous().numpy().tobytes())
    if doc_ids is not None:
        h.update(doc_ids.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def build_cache(
    model: Any,
    tokens: torch.Tensor,
    hookpoints: list[str] | tuple[str, ...] | str,
    out_dir: str | Path,
    *,
    doc_ids: torch.Tensor | None = None,
    n_tokens: int | None = None,
    dtype: str = "float32",
    shard_tokens: int = 65536,
    batch_size: int = 8,
    drop_bos: bool = True,
    exclude_special: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    tokenizer: Any = None,
) -> Path:
    """Run ``model`` over ``tokens`` [n_seq, n_ctx] once and cache activations at ``hookpoints``.

    ``doc_ids`` [n_seq, n_ctx] (default: the row index) and the in-row positions are stored
    beside the activations. ``n_tokens`` caps the number of cached (kept) tokens. Batches of
    ``batch_size`` sequences run on the model's device. ``tokenizer`` (default: the model's)
    gives the BOS id (without one, position 0 counts as BOS) and the special tokens. Returns the cache folder; an interrupted
    call resumes when called again with the same arguments.
    """
    reader = HookpointReader(model, hookpoints)
    info = reader.info
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 2 or tokens.dtype not in (torch.int32, torch.int64):
        raise ConfigError(f"tokens must be an integer tensor [n_seq, n_ctx], got {tuple(tokens.shape)} {tokens.dtype}.")
    if doc_ids is None:
        doc_ids = torch.arange(tokens.shape[0]).unsqueeze(1).expand_as(tokens)
    if doc_ids.shape != tokens.shape:
        raise ConfigError(f"doc_ids must have the shape of tokens {tuple(tokens.shape)}, got {tuple(doc_ids.shape)}.")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    tokenizer = tokenizer if tokenizer is not None else info.tokenizer
    bos = bos_token_id(tokenizer)
    excluded = special_token_ids(tokenizer) if exclude_special else []
    if exclude_special and not excluded:
        raise ConfigError("exclude_special needs a tokenizer that lists its special tokens; pass tokenizer=.")
    keep = keep_mask(tokens, drop_bos=drop_bos, bos_id=bos, exclude_ids=excluded)
    available = int(keep.sum())
    target = available if n_tokens is None else int(n_tokens)
    if target <= 0:
        raise ConfigError(f"n_tokens must be a positive integer, got {n_tokens!r}.")
    if target > available:
        raise DataError(
            f"the token source has only {available} usable tokens but n_tokens={target} were asked for; "
            "give more text or a smaller token count."
        )
    device = reader.device
    # one probe forward gives each hookpoint's width
    probe = reader(tokens[:1, : min(2, tokens.shape[1])].to(device))
    dims = {hp: int(a.shape[-1]) for hp, a in probe.items()}
    fingerprint = {
        "model_sha256": model_fingerprint(info.module),
        "tokens_sha256": tokens_fingerprint(tokens, doc_ids),
        "n_tokens": target,
        "batch_size": batch_size,
        "drop_bos": drop_bos,
        "bos_token_id": bos,
        "excluded_token_ids": excluded,
    }
    meta = {
        "model": {"name": info.name, "variant": info.variant, "path": info.path, "kind": info.kind},
        "n_ctx": int(tokens.shape[1]),
    }
    writer = CacheWriter(
        out_dir,
        dims,
        dtype=dtype,
        shard_tokens=shard_tokens,
        fingerprint=fingerprint,
        info=meta,
        overwrite=overwrite,
    )
    try:
        if not writer.complete:
            _write_rows(writer, reader, tokens, doc_ids, keep, target, batch_size, progress)
            writer.finish()
    finally:
        writer.close()
    return writer.out


def _write_rows(writer: CacheWriter, reader: HookpointReader, tokens, doc_ids, keep, target: int,
                batch_size: int, progress: bool | None) -> None:
    """Run the model over fixed batches of sequences and append their kept rows, skipping the
    rows already in complete shards (a resumed cache)."""
    device = reader.device
    skip = writer.tokens_written
    positions = torch.arange(tokens.shape[1]).unsqueeze(0)
    bar = token_bar(target, "cache", disable=None if progress is None else not progress)
    bar.update(skip)
    done = 0  # kept tokens before the current batch
    for start in range(0, tokens.shape[0], batch_size):
        if done >= target:
            break
        rows = slice(start, start + batch_size)
        k = keep[rows]
        n_batch = int(k.sum())
        if done + n_batch <= skip:  # already in a complete shard
            done += n_batch
            continue
        acts = reader(tokens[rows].to(device))
        lo = max(0, skip - done)
        hi = min(n_batch, target - done)
        flat_keep = k.to(device)
        selected = {hp: a[flat_keep][lo:hi].float().cpu() for hp, a in acts.items()}
        writer.add(
            selected,
            tokens[rows][k][lo:hi],
            doc_ids[rows][k][lo:hi],
            positions.expand_as(k)[k][lo:hi],
        )
        bar.update(hi - lo)
        done += n_batch
    bar.close()
