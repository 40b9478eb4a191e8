"""Crosscoder folders, and an export that dictionary_learning's crosscoder classes read.

saekit's crosscoder folder (written by saekit.dictionaries.folder, read back by ``saekit.load``)::

    saekit.json                    the DictionaryConfig (n_sources, source_names), metrics,
                                   training config, buffers, versions; written last
    crosscoder_weights.safetensors W_enc [M, d, n], b_enc [n], W_dec [n, M, d], b_dec [M, d],
                                   act_scale [M] (not folded: decoder norms stay in the scaled
                                   units the sharing analysis compares), threshold [n] (batchtopk)
    sparsity.safetensors           log10(feature density + 1e-10) [n], when known

There is no ``cfg.json``: SAELens has no crosscoder class, and a folder that looked like a
SAELens SAE would be loaded wrongly by it.

``export_dictionary_learning(cc, out)`` writes ``ae.pt`` (a plain state dict, loadable with
``torch.load(weights_only=True)``) and ``config.json`` for the ``CrossCoder`` (relu) and
``BatchTopKCrossCoder`` (batchtopk) classes of dictionary_learning's crosscoder fork
(science-of-finetuning / jkminder): ``encoder.weight [M, d, n]``, ``encoder.bias [n]``,
``decoder.weight [M, n, d]``, ``decoder.bias [M, d]``, ``code_normalization_id`` (CROSSCODER),
and for batchtopk ``k`` and a scalar ``threshold`` on z·Σ||d||. Their encoder does not subtract
b_dec from the input, so it is folded into the encoder bias. Not expressible there: a per-token
``topk`` crosscoder (no such class), and a batchtopk crosscoder trained with a different
activation scale per source (their selection reads the raw decoder norms).
"""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.config import DictionaryConfig
from saekit.errors import ConfigError
from saekit.fileutil import atomic_torch_save, atomic_write_json
from saekit.kinds import KINDS

_CODE_NORMALIZATION_CROSSCODER = 1  # dictionary_learning's CodeNormalization.CROSSCODER.value


def export_dictionary_learning(cc: torch.nn.Module, out: str | Path) -> Path:
    """Write ``ae.pt`` + ``config.json`` for dictionary_learning's crosscoder classes."""
    cfg: DictionaryConfig = cc.cfg
    dl_class = KINDS[cfg.kind].dictionary_learning_crosscoder
    if not dl_class:
        raise ConfigError(
            f"dictionary_learning has no per-token {cfg.kind} crosscoder class (only CrossCoder with "
            "ReLU and BatchTopKCrossCoder); train kind='batchtopk' to export."
        )
    folded = type(cc)(cfg).to(cc.W_enc.dtype)  # a fresh copy of the same class: io needs no registry
    folded.load_state_dict(cc.state_dict())
    try:
        folded.to_inference().fold_act_scale()
    except ValueError as e:
        raise ConfigError(f"cannot export to dictionary_learning: {e}") from None
    with torch.no_grad():
        # their encoder reads x, not x - b_dec: fold Σ_m b_dec[m]·W_enc[m] into the bias
        bias = folded.b_enc - torch.einsum("md,mdn->n", folded.b_dec, folded.W_enc)
        state = {
            "encoder.weight": folded.W_enc.detach().clone(),
            "encoder.bias": bias.detach().clone(),
            "decoder.weight": folded.W_dec.detach().permute(1, 0, 2).contiguous(),
            "decoder.bias": folded.b_dec.detach().clone(),
            "code_normalization_id": torch.tensor(_CODE_NORMALIZATION_CROSSCODER),
        }
        if cfg.kind == "batchtopk":
            state["k"] = torch.tensor(cfg.k, dtype=torch.int)
            state["threshold"] = folded.threshold[0].detach().clone().float()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(out / "ae.pt", state)
    trainer = {
        "dict_class": dl_class,
        "activation_dim": cfg.d_in,
        "dict_size": cfg.n_latents,
        "num_layers": cfg.n_sources,
        "source_names": list(cc.source_names),
        "lm_name": cfg.model_name,
        "submodule_name": cfg.hook_name,
    }
    if cfg.kind == "batchtopk":
        trainer["k"] = cfg.k
    atomic_write_json(out / "config.json", {"trainer": trainer})
    return out

