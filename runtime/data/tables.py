"""Tabular inputs of `wse data`: Parquet and Arrow files, and directories written by HF ``datasets``' save_to_disk.

One column (``text`` unless ``--text-column`` says otherwise) holds one document per row. Read with pyarrow (an
optional dependency: ``pip install "wse-sim[arrow]"``), locally; nothing is downloaded and ``datasets`` itself is
not needed. Layouts:

- ``.parquet``: any Parquet file (only the text column is read);
- ``.arrow``: an Arrow IPC file (Feather v2) or stream (what ``datasets`` writes: ``data-00000-of-0000N.arrow``);
- a ``save_to_disk`` directory: a ``Dataset`` (``state.json`` lists its ``.arrow`` files in order, beside
  ``dataset_info.json``) or a ``DatasetDict`` (``dataset_dict.json`` lists its splits, each a ``Dataset``
  subdirectory; all splits are read, in that order; give ``DIR/train`` for one split).

A missing column, a column that does not hold strings and a null row are refused with one line naming the file (and
row) and the fix; empty or blank rows are not documents and are skipped, and counted (``skipped_rows``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runtime.errors import UserError

TABLE_SUFFIXES = (".parquet", ".arrow")
DEFAULT_TEXT_COLUMN = "text"


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a directory written by ``datasets``' ``Dataset.save_to_disk`` or ``DatasetDict``'s."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or
                              ((path / "state.json").is_file() and (path / "dataset_info.json").is_file()))


def is_table(path: Path) -> bool:
    """Whether ``path`` is read by this module (a Parquet/Arrow file or a save_to_disk directory)."""
    return path.suffix.lower() in TABLE_SUFFIXES or is_saved_dataset(path)


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not readable JSON ({type(err).__name__}); save the dataset again with save_to_disk") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object; save the dataset again with save_to_disk")
    return value


def saved_dataset_files(directory: Path) -> list[Path]:
    """The ``.arrow`` files of a save_to_disk directory, in dataset order (every split of a DatasetDict)."""
    if (directory / "dataset_dict.json").is_file():
        splits = _json(directory / "dataset_dict.json").get("splits")
        if not isinstance(splits, list) or not splits:
            raise UserError(f"{directory / 'dataset_dict.json'} lists no splits; save the dataset again with save_to_disk")
        return [f for split in splits for f in saved_dataset_files(directory / str(split))]
    state = directory / "state.json"
    if not state.is_file():
        raise UserError(f"{directory} has no state.json; give a directory written by datasets' save_to_disk")
    entries = _json(state).get("_data_files")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "filename" in e for e in entries):
        raise UserError(f"{state} has no _data_files list; save the dataset again with save_to_disk")
    files = [directory / e["filename"] for e in entries]
    for f in files:
        if not f.is_file():
            raise UserError(f"{f} is missing (listed in {state}); copy the whole dataset directory")
    return files


def _pyarrow(path: Path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UserError(f"reading {path} needs pyarrow; install it with pip install \"wse-sim[arrow]\" "
                        "(or pip install pyarrow)") from None
    import pyarrow as pa

    return pa


def _read_table(path: Path, column: str):
    """The whole table of ``path`` (only ``column`` for Parquet), or a one-line UserError for a foreign file."""
    pa = _pyarrow(path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            if column not in names:
                raise _missing_column(path, column, names)
            return pq.read_table(path, columns=[column])
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_file(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as err:
        kind = "Parquet" if path.suffix.lower() == ".parquet" else "Arrow IPC"
        raise UserError(f"{path} is not a readable {kind} file ({type(err).__name__}); give a valid file") from None


def _missing_column(path: Path, column: str, names: list[str]) -> UserError:
    return UserError(f"{path} has no column '{column}' (its columns: {', '.join(names) or 'none'}); "
                     "pass --text-column NAME")


def column_documents(path: Path, column: str = DEFAULT_TEXT_COLUMN) -> tuple[list[str], int]:
    """(documents, skipped blank rows) of one Parquet/Arrow file's ``column``; UserError naming the file and the fix
    for a missing column, non-string values or a null row."""
    pa = _pyarrow(path)
    table = _read_table(path, column)
    if column not in table.column_names:
        raise _missing_column(path, column, table.column_names)
    values = table.column(column)
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or
            getattr(pa.types, "is_string_view", lambda _: False)(kind)):
        raise UserError(f"{path} column '{column}' holds {kind}, not strings; pass --text-column with a text column")
    if values.null_count:
        row = next(i for i, v in enumerate(values.is_null().to_pylist()) if v)
        raise UserError(f"{path} column '{column}' is null at row {row} ({values.null_count} null rows); "
                        f"drop them first (e.g. dataset.filter(lambda r: r[{column!r}] is not None))")
    docs = [d for d in values.to_pylist() if d.strip()]
    return docs, len(values) - len(docs)


def read_table_input(path: Path, column: str = DEFAULT_TEXT_COLUMN) -> tuple[str, int, str, list[str], int]:
    """(kind, bytes, sha256, documents, skipped blank rows) of a Parquet/Arrow file or a save_to_disk directory.

    The sha256 covers the data files in order (a directory's JSON bookkeeping excluded), so an unchanged dataset
    keeps its fingerprint."""
    files = saved_dataset_files(path) if path.is_dir() else [path]
    digest, size, docs, skipped = hashlib.sha256(), 0, [], 0
    for f in files:
        with open(f, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
        size += f.stat().st_size
        part, blank = column_documents(f, column)
        docs += part
        skipped += blank
    if not docs:
        raise UserError(f"{path} holds no non-empty '{column}' rows; give a dataset with text or pass --text-column")
    kind = "hf-dataset" if path.is_dir() else path.suffix.lower().lstrip(".")
    return kind, size, digest.hexdigest(), docs, skipped
