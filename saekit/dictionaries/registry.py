"""The classes that implement each dictionary kind, keyed by the kinds of the architecture
registry (saekit.kinds, which says what each kind is called elsewhere). ``create`` in
saekit.dictionaries builds from here."""

from __future__ import annotations

from saekit.dictionaries.abstopk import AbsTopKDictionary
from saekit.dictionaries.base import SparseDictionary
from saekit.dictionaries.batchtopk import BatchTopKDictionary
from saekit.dictionaries.crosscoder import BatchTopKCrossCoder, CrossCoder, ReLUCrossCoder, TopKCrossCoder
from saekit.dictionaries.gated import GatedDictionary
from saekit.dictionaries.jumprelu import JumpReLUDictionary
from saekit.dictionaries.matryoshka import MatryoshkaDictionary
from saekit.dictionaries.relu import ReLUDictionary
from saekit.dictionaries.topk import TopKDictionary
from saekit.errors import ConfigError
from saekit.kinds import KINDS

ARCHITECTURES: dict[str, type[SparseDictionary]] = {
    cls.kind: cls
    for cls in (
        ReLUDictionary,
        TopKDictionary,
        BatchTopKDictionary,
        JumpReLUDictionary,
        MatryoshkaDictionary,
        AbsTopKDictionary,
        GatedDictionary,
    )
}
# a crosscoder's own ``kind`` is "crosscoder" (the ReLU resampler must not apply): keyed here by selection
CROSSCODERS: dict[str, type[CrossCoder]] = {
    "relu": ReLUCrossCoder,
    "topk": TopKCrossCoder,
    "batchtopk": BatchTopKCrossCoder,
}


def architecture(kind: str) -> type[SparseDictionary]:
    """The dictionary class for ``kind`` (a key of ``saekit.kinds.KINDS``)."""
    try:
        return ARCHITECTURES[kind]
    except KeyError:
        raise ConfigError(f"kind {kind!r} is not known; expected one of {', '.join(KINDS)}.") from None


def crosscoder_class(kind: str) -> type[CrossCoder]:
    """The crosscoder class for ``kind`` (the kinds with ``crosscoder=True`` in saekit.kinds)."""
    try:
        return CROSSCODERS[kind]
    except KeyError:
        names = ", ".join(k for k, f in KINDS.items() if f.crosscoder)
        raise ConfigError(f"kind {kind!r} has no crosscoder; expected one of {names}.") from None
