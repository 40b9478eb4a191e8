"""saekit.io: dictionary files (SAELens-compatible), foreign formats, the Hugging Face Hub, export.

``save_dictionary(sae, path)`` writes saekit's folder; ``load(path_or_repo_id, subfolder)`` reads
saekit, SAELens, sparsify and dictionary_learning folders, locally or from the Hub;
``push_to_hub(dir_or_sae, "org/name")`` publishes in one commit; ``export(dir, out, format)``
writes sparsify, SAELens or circuit-tracer layouts.
"""

from __future__ import annotations

from saekit.lazy import lazy_getattr

# public name -> module that defines it, imported on first use. The native folder writer and the
# Hub publisher live in saekit.dictionaries (folder.py, publish.py: what a dictionary's own
# save/push_to_hub use); saekit.io reads folders back, so it imports dictionaries, never the reverse.
_EXPORTS = {
    "detect_format": "saekit.io.foreign",
    "dictionary_folders": "saekit.dictionaries.folder",
    "export": "saekit.io.export",
    "load": "saekit.io.hub",
    "load_folder": "saekit.io.foreign",
    "model_card": "saekit.dictionaries.card",
    "push_to_hub": "saekit.io.hub",
    "read_meta": "saekit.dictionaries.folder",
    "save_dictionary": "saekit.dictionaries.folder",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
