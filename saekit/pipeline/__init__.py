"""saekit.pipeline: the one place that orchestrates (train → evaluate → compare → verdict).

``run_comparison`` trains dictionaries on several model variants, evaluates and compares them
(``saekit compare``, the end of ``saekit demo``). Its steps live in one module each: variants and
shared tokens (``variants``), activations (``activations``), per-dictionary training and evaluation
(``dictionaries``), cross-variant comparison (``crossvariant``), the synthetic check
(``synthetic``), the record (``results``); ``seeds`` documents how its seeds are derived;
``stats``: hierarchical bootstrap over model and dictionary seeds, Holm correction, verdicts per axis.
"""

from saekit.pipeline.activations import build_variant_cache
from saekit.pipeline.run import run_comparison
from saekit.pipeline.seeds import derive_seed
from saekit.pipeline.synthetic import synthetic_check
from saekit.pipeline.variants import default_dict_cfgs

__all__ = ["build_variant_cache", "default_dict_cfgs", "derive_seed", "run_comparison", "synthetic_check"]
