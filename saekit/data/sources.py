"""Text from Hugging Face datasets (hub names, streamed), local text/JSONL/parquet files, or a
planted-feature language (`planted:NAME`, see saekit.data.planted)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from saekit.errors import DataError

_LOCAL_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _local_builder(path: Path) -> tuple[str, list[str]]:
    files = sorted(p for p in path.rglob("*") if p.suffix in _LOCAL_BUILDERS) if path.is_dir() else [path]
    if not files:
        raise DataError(f"dataset folder {path} holds no .txt, .jsonl, .json or .parquet files.")
    kinds = {_LOCAL_BUILDERS.get(p.suffix) for p in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(
            f"dataset files under {path} must all be one of .txt, .jsonl/.json or .parquet, got {sorted({p.suffix for p in files})}."
        )
    return kinds.pop(), [str(p) for p in files]


def load_text_dataset(
    name_or_path: str,
    split: str = "train",
    text_column: str = "text",
    streaming: bool | None = None,
    name: str | None = None,
) -> Iterable[dict]:
    """A Hugging Face dataset by hub name (streamed by default) or local files.

    Local paths (.txt, .jsonl/.json, .parquet, or a folder of them) load through the
    `datasets` builders; a hub name streams so a large corpus never lands whole on disk.
    Rows must hold `text_column` or a pre-tokenized `input_ids` column.
    """
    if name_or_path.startswith("planted:"):  # a generated planted-feature language, token ids
        from saekit.data.planted import planted_documents

        return [{"input_ids": doc} for doc in planted_documents(name_or_path)]
    import datasets

    path = Path(name_or_path)
    looks_local = path.exists() or name_or_path.startswith((".", "/", "~")) or path.suffix in _LOCAL_BUILDERS
    if looks_local:
        path = path.expanduser()
        if not path.exists():
            raise DataError(f"dataset file {path} does not exist.")
        builder, files = _local_builder(path)
        if all(Path(f).stat().st_size == 0 for f in files):
            raise DataError(f"dataset {path} is empty: its files hold no text.")
        try:
            ds = datasets.load_dataset(builder, data_files={"train": files}, split="train", streaming=bool(streaming))
        except Exception as e:  # malformed JSON/parquet: name the file and the cause in one line
            raise DataError(f"could not read dataset {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    else:
        try:
            ds = datasets.load_dataset(
                name_or_path, name, split=split, streaming=True if streaming is None else streaming
            )
        except Exception as e:  # the datasets library raises many types; one sentence for the user
            raise DataError(
                f"could not load Hugging Face dataset {name_or_path!r} (split {split!r}): {type(e).__name__}: {e}".rstrip(
                    "."
                )
                + "."
            ) from None
    columns = getattr(ds, "column_names", None)
    if columns is not None and text_column not in columns and "input_ids" not in columns:
        raise DataError(
            f"dataset {name_or_path} has no column {text_column!r} (nor 'input_ids'); its columns are {', '.join(columns)}."
        )
    return ds


def iter_texts(rows: Iterable[dict], text_column: str = "text") -> Iterator[str | list[int]]:
    """Texts (or pre-tokenized id lists, passed through as they are) from dataset rows."""
    for row in rows:
        if "input_ids" in row and text_column not in row:
            yield list(row["input_ids"])
        else:
            try:
                yield row[text_column]
            except KeyError:
                raise DataError(f"dataset row has no column {text_column!r}; its keys are {', '.join(row)}.") from None


def load_texts(dataset: str | None, split: str, text_column: str = "text") -> Iterable[str | list[int]]:
    """Documents of ``dataset`` (a Hugging Face name or local files) at ``split``, or, without a
    dataset, of the built-in corpus split (train / validation / all): what --dataset, --split
    and --text-column pick in every command."""
    if dataset:
        return iter_texts(load_text_dataset(dataset, split, text_column), text_column)
    from saekit.data.corpus import load_corpus

    return load_corpus(split)
