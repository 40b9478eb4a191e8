"""saekit.io: dictionary files (SAELens-compatible), foreign formats, the Hugging Face Hub, export.

``save_dictionary(sae, path)`` writes saekit's folder; ``load(path_or_repo_id, subfolder)`` reads
saekit, SAELens, sparsify and dictionary_learning folders, locally or from the Hub;
``push_to_hub(dir_or_sae, "org/name")`` publishes in one commit; ``export(dir, out, format)``
writes sparsify, SAELens or circuit-tracer layouts.
"""

from saekit.io.card import model_card
from saekit.io.export import export
from saekit.io.foreign import detect_format, load_folder
from saekit.io.format import dictionary_folders, read_meta, save_dictionary
from saekit.io.hub import load, push_to_hub

__all__ = [
    "detect_format",
    "dictionary_folders",
    "export",
    "load",
    "load_folder",
    "model_card",
    "push_to_hub",
    "read_meta",
    "save_dictionary",
]
