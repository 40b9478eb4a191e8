"""saekit: sparse dictionaries on language-model activations, compared across model variants.

Public names are imported lazily (on first use), so `import saekit` stays fast and a user who
only trains dictionaries never imports transformer-lens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saekit.lazy import lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "SaekitError": "saekit.errors",
    "ConfigError": "saekit.errors",
    "DataError": "saekit.errors",
    "ModelConfig": "saekit.config",
    "DictionaryConfig": "saekit.config",
    "TrainConfig": "saekit.config",
    "load_corpus": "saekit.data",
    "train_tokenizer": "saekit.data",
    "load_tokenizer": "saekit.data",
    "pack_tokens": "saekit.data",
    "train_model": "saekit.models",
    "train_variants": "saekit.models",
    "load_model": "saekit.models",
    "ActivationStream": "saekit.activations",
    "ActivationCache": "saekit.activations",
    "build_cache": "saekit.activations",
    "train": "saekit.training",
    "train_data_parallel": "saekit.parallel",
    "train_hookpoints": "saekit.parallel",
    "DistributedError": "saekit.parallel",
    "load": "saekit.io",
    "save_dictionary": "saekit.io",
    "push_to_hub": "saekit.io",
    "evaluate": "saekit.evaluation",
    "compare_dictionaries": "saekit.evaluation",
    "run_comparison": "saekit.pipeline",
    "write_report": "saekit.report",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs only
    from saekit.config import DictionaryConfig, ModelConfig, TrainConfig  # noqa: F401
    from saekit.errors import ConfigError, DataError, SaekitError  # noqa: F401
