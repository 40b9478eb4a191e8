"""The one seed-derivation scheme of the comparison pipeline.

A comparison has one kind of seed the user names: the *dictionary seed* ``s`` (``--seeds 0 1 2``).
It is the training seed itself (``TrainConfig.seed = s``), so ``saekit train --seed s`` on the same
activations reproduces a dictionary of the comparison. Every other random choice the pipeline makes
for that dictionary (which latents auto-interp explains, which example latents the report shows, the
synthetic check) takes ``derive_seed(s, purpose, *names)``: a 63-bit integer from the BLAKE2b hash of
the seed and the labels. It is

- stable: the same inputs give the same seed on every machine, process and Python version (unlike
  ``hash()``, which is salted per process);
- independent: two purposes (or two variants) never share a stream by accident, as ``seed + 1``
  schemes do when one purpose's offset meets another's seed.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *labels: object) -> int:
    """A seed for the purpose named by ``labels`` (e.g. ``"autointerp", variant, dict_name``) of ``seed``."""
    text = "\x1f".join([str(int(seed)), *map(str, labels)])
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1
