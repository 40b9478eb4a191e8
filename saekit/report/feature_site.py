"""Write the feature browser's static site: index.html, assets, and data in chunked .js files.

Pages opened from file:// cannot fetch() JSON in Chromium, so every data file is a script that
hands its payload to ``saekitChunk(key, data)``; the page adds a <script> tag per chunk when it
needs it. Layout under the output folder::

    index.html  assets/app.js  assets/style.css  saekit_browser.json (manifest: every file written)
    data/<dict>/meta.js  data/<dict>/index_<i>.js  data/<dict>/latents_<i>.js  data/<dict>/vocab.js

The site is written into a staging folder beside the output and moved into place at the end, so
a killed build never leaves a half site under the output's name.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from saekit.errors import ConfigError
from saekit.fileutil import atomic_write_json
from saekit.report.templating import environment

MANIFEST = "saekit_browser.json"
INDEX_CHUNK = 2048  # latents per index chunk
LATENT_CHUNK = 64  # latents per details chunk


def check_output(out: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an output folder that holds anything but a browser saekit wrote (and that one unless told)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the browser.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise ConfigError(
                f"output folder {out} already holds files saekit browse did not write; give an empty or new folder."
            )
        if not overwrite:
            raise ConfigError(f"output folder {out} holds a browser already; pass --overwrite to replace it.")
        _refuse_foreign(out)
    return out


def _refuse_foreign(out: Path) -> None:
    """Raise if ``out`` holds any file its browser manifest does not list."""
    listed = set(json.loads((out / MANIFEST).read_text()).get("files", [])) | {MANIFEST}
    foreign = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir() and str(p.relative_to(out)) not in listed
    )
    if foreign:
        raise ConfigError(
            f"output folder {out} holds files saekit browse did not write (e.g. {foreign[0]}); nothing replaced."
        )


def _script(key: str, payload: Any) -> str:
    # json.dumps escapes nothing HTML-special inside a .js file loaded by src, but "</" is made safe anyway
    body = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return f"saekitChunk({json.dumps(key)},{body});\n"


class SiteWriter:
    """Collects files in a staging folder next to ``out``, then ``finish`` moves them into place."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.stage = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        if self.stage.exists():
            shutil.rmtree(self.stage)
        self.stage.mkdir()
        self.files: list[str] = []

    def write(self, rel: str, text: str) -> None:
        path = self.stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files.append(rel)

    def chunk(self, rel: str, key: str, payload: Any) -> None:
        self.write(rel, _script(key, payload))

    def assets(self, config: dict) -> None:
        env = environment(strict=True)
        self.write("index.html", env.get_template("browser.html.j2").render(config=config))
        static = resources.files("saekit.report") / "static"
        for name in ("app.js", "style.css"):
            self.write(f"assets/{name}", (static / name).read_text(encoding="utf-8"))

    def finish(self, summary: dict) -> Path:
        atomic_write_json(self.stage / MANIFEST, {"tool": "saekit browse", "files": self.files, **summary})
        if self.out.is_dir():  # empty, or a browser saekit wrote (check_output allowed it)
            _remove_previous(self.out)
        os.replace(self.stage, self.out)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)


def _remove_previous(out: Path) -> None:
    """Delete the files an earlier browser's manifest lists (nothing else), then the emptied folders."""
    man = out / MANIFEST
    if man.is_file():
        _refuse_foreign(out)
        for rel in json.loads(man.read_text()).get("files", []):
            p = (out / rel).resolve()
            if p.is_file() and out.resolve() in p.parents:
                p.unlink()
        man.unlink()
    for d in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    out.rmdir()
