"""One parser for counts given on the command line or in TOML: '200000', '200k', '1.5M', '2_000'."""

from __future__ import annotations

import re

from saekit.errors import ConfigError

_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
_PATTERN = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)\s*([kKmMgGbB]?)\s*")


def parse_count(text: str | int, what: str = "--tokens") -> int:
    """'50M' -> 50_000_000, '2.5k' -> 2500, 123 -> 123; anything that is not a whole positive
    number after scaling is a ConfigError naming ``what``."""
    if isinstance(text, bool):
        raise ConfigError(f"{what} must be a count like 200000, 200k or 1M, got {text!r}.")
    if isinstance(text, int):
        value = text
    else:
        m = _PATTERN.fullmatch(str(text))
        if not m:
            raise ConfigError(f"{what} must be a count like 200000, 200k or 1M, got {text!r}.")
        scaled = float(m.group(1).replace("_", "")) * _SCALE[m.group(2).lower()]
        if scaled != int(scaled):
            raise ConfigError(f"{what} must be a whole number of items, got {text!r} (= {scaled:g}).")
        value = int(scaled)
    if value <= 0:
        raise ConfigError(f"{what} must be a positive count, got {text!r}.")
    return value


def count_arg(what: str):
    """An argparse ``type=`` that parses counts and names the flag in its error."""
    import argparse

    def parse(text: str) -> int:
        try:
            return parse_count(text, what)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse
