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
(science-of-finetuning/crosscoder_learning, the June 2025+ layout with an activation normaliser):
``encoder.weight [M, d, n]``, ``encoder.bias [n]``, ``decoder.weight [M, n, d]``,
``decoder.bias [M, d]``, ``code_normalization_id`` (CROSSCODER), the normaliser's
``target_rms``, ``activation_mean/std [M, d]`` and ``activation_global_scale [M]`` (carrying
saekit's per-source ``act_scale``), and for batchtopk ``k`` and a scalar ``threshold`` on z·Σ||d||.
Their encoder does not subtract b_dec from the input, so it is folded into the encoder bias.
Checked against that class itself by benchmarks/crosscoder_dictlearn_check.py. Not expressible
there: a per-token ``topk`` crosscoder (no such class). The PyPI package ``dictionary-learning``
(0.1.0) has no crosscoder class at all.
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
    """Write ``ae.pt`` + ``config.json`` for dictionary_learning's crosscoder classes (module docstring)."""
    cfg: DictionaryConfig = cc.cfg
    dl_class = KINDS[cfg.kind].dictionary_learning_crosscoder
    if not dl_class:
        raise ConfigError(
            f"dictionary_learning has no per-token {cfg.kind} crosscoder class (only CrossCoder with "
            "ReLU and BatchTopKCrossCoder); train kind='batchtopk' to export."
        )
    with torch.no_grad():
        w_enc, b_dec = cc.W_enc.detach().float(), cc.b_dec.detach().float()
        # their encoder reads x, not x - b_dec: fold Σ_m b_dec[m]·W_enc[m] into the bias
        bias = cc.b_enc.detach().float() - torch.einsum("md,mdn->n", b_dec, w_enc)
        state = {
            "encoder.weight": w_enc.clone(),
            "encoder.bias": bias.clone(),
            "decoder.weight": cc.W_dec.detach().float().permute(1, 0, 2).contiguous(),
            "decoder.bias": b_dec.clone(),
            "code_normalization_id": torch.tensor(_CODE_NORMALIZATION_CROSSCODER),
            **_normalizer(cc.act_scale.detach().float().reshape(-1), cfg.d_in),
        }
        if cfg.kind == "batchtopk":
            state["k"] = torch.tensor(cfg.k, dtype=torch.int)
            state["threshold"] = cc.threshold[0].detach().clone().float()
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


def _normalizer(scale: torch.Tensor, d: int) -> dict[str, torch.Tensor]:
    """The buffers of dictionary_learning's activation normaliser (NormalizableMixin) for saekit's act_scale.

    Their crosscoders read x' = (x - activation_mean) · activation_global_scale[m] and write
    x̂ = x̂' / (activation_global_scale[m] + 1e-8) + activation_mean: with a zero mean and the global
    scale set to act_scale, their forward is saekit's (the weights stay in saekit's scaled units,
    so the decoder norms are the ones the sharing analysis read). activation_std is set so that
    their own formula (target_rms / √Σ std²) gives the same scale. Unit scales: NaN mean and std,
    their marker for "no normaliser".
    """
    m = scale.shape[0]
    if bool((scale == 1).all()):
        nan = torch.full((m, d), float("nan"))
        return {"target_rms": torch.tensor(1.0), "activation_mean": nan, "activation_std": nan.clone(),
                "activation_global_scale": torch.ones(m)}  # fmt: skip
    std = (1.0 / (scale * d**0.5))[:, None].expand(m, d).contiguous()
    return {"target_rms": torch.tensor(1.0), "activation_mean": torch.zeros(m, d), "activation_std": std,
            "activation_global_scale": scale.clone()}  # fmt: skip
