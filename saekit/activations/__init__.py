"""Activations: hookpoints, a live shuffled stream, and a disk cache of safetensors shards.

The source interface (what trainers and evaluation consume)
----------------------------------------------------------
``ActivationCache`` (disk) and ``ActivationStream`` (live model) both offer:

- ``d_in``, ``d_out`` (``d_out == d_in`` unless ``paired``), ``paired`` (bool),
  ``hookpoints`` (one name, or ``[input, output]`` for a transcoder);
- ``next_batch(batch_size) -> Tensor [B, d_in]``, or a tuple ``(x [B, d_in], y [B, d_out])``
  of the same tokens for a paired source; rows come shuffled by a seeded generator;
- ``batches(batch_size, epochs=None)``: an iterator of such batches (never ends when
  ``epochs`` is None);
- ``state_dict()`` / ``load_state_dict(state)``: the reader's position (epoch, offset / token
  cursor, RNG), so a resumed training sees exactly the batches it would have seen;
- ``last_meta``: with ``with_meta=True``, ``{"token_ids", "doc_ids", "positions"}`` ([B] each) of
  the last batch, to show each row's context later;
- ``norm_scale``: the factor (per side for pairs) that makes E||x||^2 = d; applied to batches
  when ``normalize=True``, and to fold into a dictionary's weights at save time;
- ``wait_fraction``: the fraction of time the consumer waited for data.

Writing: ``build_cache(model, tokens, hookpoints, out_dir, ...)`` or ``saekit cache``.
Reading activations straight from a model: ``HookpointReader(model, hookpoints)(tokens)``, or
``read_activations(model, tokens, hookpoints)`` for a whole token grid held in memory;
``default_n_ctx(model)`` is the one default context length.
"""

from saekit.activations.cache import ActivationCache, read_manifest
from saekit.activations.hookpoints import HookpointReader, keep_mask, transcoder_hookpoints
from saekit.activations.normalize import estimate_norm_scale
from saekit.activations.read import default_n_ctx, read_activations
from saekit.activations.stream import ActivationStream
from saekit.activations.writer import CacheWriter, build_cache

__all__ = [
    "ActivationCache",
    "ActivationStream",
    "CacheWriter",
    "HookpointReader",
    "build_cache",
    "default_n_ctx",
    "estimate_norm_scale",
    "keep_mask",
    "read_activations",
    "read_manifest",
    "transcoder_hookpoints",
]
