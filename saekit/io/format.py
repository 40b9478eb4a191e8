"""saekit's native folder format now lives with the dictionaries (saekit.dictionaries.folder), so
that a dictionary saves itself without importing saekit.io; these names are re-exported here."""

from saekit.dictionaries.folder import (  # noqa: F401
    CFG_FILENAME,
    FORMAT_VERSION,
    SAEKIT_FILENAME,
    SAELENS_SCHEMA_VERSION,
    SPARSITY_FILENAME,
    TENSOR_NAMES,
    WEIGHTS_FILENAME,
    dictionary_folders,
    dtype_name,
    export_tensors,
    extra_buffers,
    hook_layer,
    is_dictionary_folder,
    read_meta,
    read_tensors,
    saelens_architecture,
    saelens_cfg,
    save_dictionary,
)
