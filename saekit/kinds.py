"""The architecture registry: every dictionary kind and what saekit and other libraries call it.

One table, read by the config (which kinds exist, which take k), by the folder writer (SAELens
architecture names), by the readers and exporters in saekit.io (SAELens, sparsify,
dictionary_learning, circuit-tracer) and by the crosscoder export. The classes that implement
each kind are keyed by the same names in ``saekit.dictionaries.registry``. This module holds
plain data and imports nothing, so the config (below every package) can read it.

A new kind: one row here, one class file in dictionaries/ and one entry in its registry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    uses_k: bool  # the L0 is set by k (top-k kinds)
    saved_as: str  # the kind whose form a saved folder holds (batchtopk, matryoshka: a JumpReLU)
    saelens: str = ""  # SAELens architecture of the SAE, for kinds saved as themselves
    saelens_transcoders: bool = False  # SAELens also has <kind> transcoder and skip-transcoder classes
    crosscoder: bool = False  # saekit has a crosscoder of this kind
    dictionary_learning: str = ""  # the dictionary_learning SAE class saekit reads as this kind
    dictionary_learning_crosscoder: str = ""  # the dictionary_learning crosscoder class it exports to
    sparsify: bool = False  # EleutherAI sparsify has coders of this kind (top-k only)
    # λ when sparsity_coef is not given, for inputs normalised to E||x||² = d_in (None: no penalty). relu 2:
    # Anthropic's 5 left the flat planted world's SAE at L0 4, FVU 0.65, MMCS 0.64, λ 2 recovers it (0.97);
    # gated 4: its best there (5: 0.82; 2-3: L0 13-25; 10-20 collapse; after session 7's gated changes 4: 0.987,
    # 5: 0.969, 6: 0.889); jumprelu 5 (docs/training.md)
    default_sparsity_coef: float | None = None
    # W_dec's and b_dec's rates as multiples of the run's for a single-source dictionary of this kind
    # (session 9: 3 and 0.3 for topk, batchtopk, matryoshka; abstopk and the penalty kinds gained
    # nothing; docs/training.md, "The decoder's rates"); crosscoders keep 1 and 1 (not measured);
    # W_dec's rises in crowded dictionaries (saekit.config.default_w_dec_lr_scale, session 11)
    decoder_rates: tuple[float, float] = (1.0, 1.0)
    # How far the long-run rule of crowded dictionaries applies to this kind (saekit.config.long_run_weight;
    # session 14, issue 21's synthetic row at 10M tokens): top-k in full; batchtopk and matryoshka at half,
    # where the full rule cost 19-23 % FVU and half of it keeps their latents alive at about half that cost
    # (matryoshka's dead 17.7 % at session 12's rates, 1.3 % at half; benchmarks/RESULTS.md, "Session 14")
    long_run_share: float = 1.0


KINDS: dict[str, Kind] = {
    "relu": Kind(
        uses_k=False,
        default_sparsity_coef=2.0,
        saved_as="relu",
        saelens="standard",
        saelens_transcoders=True,
        crosscoder=True,
        dictionary_learning="AutoEncoder",
        dictionary_learning_crosscoder="CrossCoder",
    ),
    "topk": Kind(
        uses_k=True,
        saved_as="topk",
        saelens="topk",  # SAELens has no top-k transcoder: saekit writes its own name for one
        crosscoder=True,
        dictionary_learning="AutoEncoderTopK",
        sparsify=True,
        decoder_rates=(3.0, 0.3),
    ),
    "batchtopk": Kind(
        uses_k=True,
        saved_as="jumprelu",  # the inference form: a per-latent threshold replaces the batch top-k
        crosscoder=True,
        dictionary_learning="BatchTopKSAE",  # read as a JumpReLU with its global threshold
        dictionary_learning_crosscoder="BatchTopKCrossCoder",
        decoder_rates=(3.0, 0.3),
        long_run_share=0.5,
    ),
    "jumprelu": Kind(
        uses_k=False,
        default_sparsity_coef=5.0,
        saved_as="jumprelu",
        saelens="jumprelu",
        saelens_transcoders=True,
        dictionary_learning="JumpReluAutoEncoder",
    ),
    "matryoshka": Kind(uses_k=True, saved_as="jumprelu", decoder_rates=(3.0, 0.3), long_run_share=0.5),
    "abstopk": Kind(uses_k=True, saved_as="abstopk", saelens="abstopk"),  # SAELens ≥ 6.5x
    "gated": Kind(uses_k=False, saved_as="gated", saelens="gated", default_sparsity_coef=4.0),
}


def saelens_architecture(kind: str, transcoder: bool = False, skip: bool = False) -> str:
    """The SAELens ``architecture`` a saekit dictionary is written as (``relu`` transcoder ->
    ``transcoder``, ``topk`` skip transcoder -> ``topk_skip_transcoder``, ``batchtopk`` -> ``jumprelu``).
    Names SAELens lacks (a top-k transcoder) are saekit's own; SAELens rejects them itself."""
    saved = KINDS[kind].saved_as
    if not (transcoder or skip):
        return KINDS[saved].saelens
    prefix = "" if saved == "relu" else f"{saved}_"
    return prefix + ("skip_transcoder" if skip else "transcoder")


def saelens_reads() -> dict[str, tuple[str, bool, bool]]:
    """SAELens architecture -> (saekit kind, transcoder, skip), for every name saekit reads back."""
    saved = [name for name, kind in KINDS.items() if kind.saved_as == name]
    forms = ((False, False), (True, False), (True, True))  # SAEs first: error messages list those
    return {saelens_architecture(n, t, s): (n, t, s) for t, s in forms for n in saved}


def saelens_has(architecture: str) -> bool:
    """Whether SAELens itself has a class for ``architecture`` (and not only saekit)."""
    read = saelens_reads().get(architecture)
    return read is not None and (not read[1] or KINDS[read[0]].saelens_transcoders)


def dictionary_learning_classes() -> dict[str, str]:
    """dictionary_learning SAE class -> the saekit kind it is read as."""
    return {k.dictionary_learning: k.saved_as for k in KINDS.values() if k.dictionary_learning}
