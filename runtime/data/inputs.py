"""The inputs of `wse data` (and of evaluation and fine-tuning): files checked and read as UTF-8 text or JSONL, and
Parquet/Arrow files or HF ``datasets`` save_to_disk directories (runtime.data.tables).

Text is prose and markup (``.txt``, ``.md``, ``.rst`` ...) and the source code of common languages (``.py``, ``.c``,
``.js`` ...: ``TEXT_SUFFIXES``), each file one document. Every input is validated before anything is written. A file
named on the command line that is empty, binary, mis-encoded or unreadable is refused with one line naming it (and
the byte offset) and the fix; the same file found inside a directory is skipped and counted instead (``Inputs.note``:
one line for all of them), as are files of other kinds there. JSONL lines that are not objects or lack their text,
and tables without the text column or with non-string values, are refused wherever they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from runtime.data.tables import DEFAULT_TEXT_COLUMN, TABLE_SUFFIXES, is_saved_dataset, is_table, read_table_input
from runtime.errors import UserError

# Read as text, each file one document: prose and markup, then the source code of common languages (a model of code
# is trained on its files as they are). Files of other kinds inside a directory are skipped and counted.
PROSE_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst", ".tex", ".org", ".adoc")
CODE_SUFFIXES = (".py", ".pyi", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cu", ".cuh", ".java", ".kt",
                 ".scala", ".go", ".rs", ".js", ".mjs", ".jsx", ".ts", ".tsx", ".rb", ".php", ".pl", ".lua", ".jl",
                 ".r", ".swift", ".m", ".sh", ".bash", ".sql", ".html", ".htm", ".css", ".xml", ".yaml", ".yml",
                 ".toml")
TEXT_SUFFIXES = PROSE_SUFFIXES + CODE_SUFFIXES
JSONL_SUFFIXES = (".jsonl",)
INPUT_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + TABLE_SUFFIXES
KINDS = "text (.txt, .md, .rst, source code: .py, .c, .js ...), .jsonl, .parquet or .arrow"


def kinds_help() -> str:
    """Every input kind, for `wse data --help`."""
    return (f"text files, each one document ({' '.join(PROSE_SUFFIXES)}; source code: {' '.join(CODE_SUFFIXES)}), "
            f".jsonl files (a text field per line), .parquet/.arrow files (a text column), directories of them "
            "(other files there are skipped and counted), or a directory written by HF datasets' save_to_disk")


class TextFileError(UserError):
    """A file that cannot be read as text; ``reason`` says why in a few words (empty, binary, not UTF-8, unreadable)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason

@dataclass
class InputFile:
    """One input of a dataset as its meta.json records it (a file, or a built-in corpus)."""

    name: str  # the path as given, or builtin:<corpus>
    kind: str  # txt | md | jsonl | parquet | arrow | hf-dataset | builtin
    bytes: int
    sha256: str
    documents: int
    skipped_rows: int = 0  # blank rows of a table (not documents)


def decode_text(path: str | os.PathLike, data: bytes) -> str:
    """UTF-8 text of a file's bytes, refusing empty, binary and mis-encoded files with the file (and byte offset)
    named in a one-line UserError; a UTF-8 byte-order mark is dropped."""
    if not data.strip():
        raise TextFileError(f"{path} is empty; remove it from the inputs or give it some text", "empty")
    if b"\x00" in data:
        raise TextFileError(f"{path} is a binary file (it contains NUL bytes; UTF-16 text is binary here); give UTF-8 "
                            "text files", "binary")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextFileError(f"{path} is not valid UTF-8 at byte offset {err.start}; re-encode it as UTF-8 (e.g. iconv "
                            "-t UTF-8)", "not UTF-8") from None
    return text.removeprefix("\ufeff")


def read_bytes(path: Path) -> bytes:
    """A file's bytes; TextFileError (reason "unreadable") when the OS refuses, e.g. no permission."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise TextFileError(f"{path} cannot be read ({err.strerror or err}); check its permissions", "unreadable") from None


def split_tail(text: str, fraction: float) -> tuple[str, str]:
    """(head, tail) of one document whose tail is about ``fraction`` of its characters (at least one): the validation
    split of a dataset made of one document (one text file). The cut is the paragraph break, else the line break,
    else the space nearest to the exact point within half the tail's length of it, so the validation text starts
    at the start of a paragraph or line where the text has them; the head is never empty."""
    n = len(text)
    want = min(max(1, round(fraction * n)), n - 1)
    point, reach = n - want, max(1, want // 2)
    lo, hi = max(1, point - reach), min(n - 1, point + reach)
    for sep in ("\n\n", "\n", " "):
        before, after = text.rfind(sep, lo, point), text.find(sep, point, hi)
        found = [i + len(sep) for i in (before, after) if i >= 0 and i + len(sep) < n]
        if found:
            point = min(found, key=lambda i: abs(i - (n - want)))
            break
    return text[:point], text[point:]


def read_text(path: str | os.PathLike) -> str:
    """A text file's contents, checked like every ``wse data`` input (also used for eval and fine-tuning inputs)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{path} does not exist or is not a file; check the path")
    return decode_text(path, read_bytes(p))


def jsonl_records(path: str | os.PathLike, text: str | None = None) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a line that is not a JSON object is refused
    with file:line named. Callers check the fields they need and name file:line the same way."""
    text = read_text(path) if text is None else text
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{lineno} is not valid JSON ({err.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{lineno} is not a JSON object; each line must be one object like {{\"text\": \"...\"}}")
        records.append((lineno, record))
    if not records:
        raise UserError(f"{path} holds no records; give it one JSON object per line")
    return records


def jsonl_documents(path: Path, text: str, column: str = DEFAULT_TEXT_COLUMN) -> list[str]:
    """The ``column`` field of each record of a JSONL file's ``text``; refused with file:line when missing or empty."""
    docs = []
    for lineno, record in jsonl_records(path, text):
        if column not in record:
            fix = " (or pass --text-column NAME)" if column == DEFAULT_TEXT_COLUMN else ""
            raise UserError(f'{path}:{lineno} has no "{column}" field; each line must be an object like '
                            f'{{"{column}": "..."}}{fix}')
        if not isinstance(record[column], str) or not record[column].strip():
            raise UserError(f'{path}:{lineno} has an empty or non-string "{column}"; give each record some text or drop the line')
        docs.append(record[column])
    return docs


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str], set[Path]]:
    """Files to read, in order (directories recursively, sorted, hidden entries skipped; a save_to_disk directory is
    one input), files of other kinds skipped in directories, and the files to read that were found in a directory."""
    files, skipped, walked = [], [], set()
    for given in inputs:
        p = Path(given).expanduser()
        if is_saved_dataset(p):
            files.append(p)
        elif p.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    f = Path(dirpath) / name
                    if name.startswith("."):
                        continue
                    (found if f.suffix.lower() in INPUT_SUFFIXES else skipped).append(f)
            if not found:
                raise UserError(f"{given} holds no {KINDS} files; point at the files to tokenise")
            files.extend(found)
            walked.update(found)
        elif p.is_file():
            if p.suffix.lower() not in INPUT_SUFFIXES:
                raise UserError(f"{given} is not a {KINDS} file; convert it to UTF-8 text or JSONL with a \"text\" field")
            files.append(p)
        else:
            raise UserError(f"input {given} does not exist; check the path")
    return files, [str(s) for s in skipped], walked


class Inputs:
    """The documents of all inputs, readable twice: once to validate and count, once to tokenise."""

    def __init__(self, inputs: list[str], builtin: str | None, text_column: str = DEFAULT_TEXT_COLUMN):
        self.files, self.other_kinds, self.walked = expand_inputs(inputs)
        self.builtin = builtin
        self.text_column = text_column
        self.unusable: dict[Path, str] = {}  # files found in a directory that cannot be read as text: why
        self.split_tail: float | None = None  # one document: this fraction of it is cut off (build_dataset sets it)
        if not self.files and not builtin:
            raise UserError("no input given; name files or directories, or use --builtin python-docs")

    @property
    def skipped(self) -> list[str]:
        """Every file a directory held that is not in the dataset: of other kinds, or unreadable as text."""
        return self.other_kinds + [str(f) for f in self.unusable]

    def note(self) -> str | None:
        """One line for every skipped file: how many, and why, or None when nothing was skipped."""
        if not self.skipped:
            return None
        counts: dict[str, int] = {}
        for reason in sorted(self.unusable.values()):
            counts[reason] = counts.get(reason, 0) + 1
        if self.other_kinds:
            suffixes = sorted({Path(f).suffix.lower() or Path(f).name for f in self.other_kinds})
            shown = ", ".join(suffixes[:5]) + (" ..." if len(suffixes) > 5 else "")
            counts[f"of other kinds ({shown})"] = len(self.other_kinds)
        n = len(self.skipped)
        return (f"skipped {n} file{'s' if n > 1 else ''} in the input directories: "
                + ", ".join(f"{k} {why}" for why, k in counts.items()) + f" (e.g. {self.skipped[0]})")

    def read(self) -> Iterator[tuple[InputFile, list[str]]]:
        if self.builtin:
            from runtime.data import corpus

            docs = corpus.documents(self.builtin)
            data = "\x00".join(docs).encode("utf-8")  # NUL never occurs in the text: an unambiguous join
            yield InputFile(f"builtin:{self.builtin}", "builtin", len(data), hashlib.sha256(data).hexdigest(), len(docs)), docs
        for f in self.files:
            if f in self.unusable:
                continue
            if is_table(f):
                kind, size, sha, docs, blank = read_table_input(f, self.text_column)
                yield InputFile(str(f), kind, size, sha, len(docs), blank), self._cut(docs)
                continue
            try:
                data = read_bytes(f)
                text = decode_text(f, data)
            except TextFileError as err:
                if f not in self.walked:
                    raise  # a file the user named is refused; one found in a directory is skipped and counted
                self.unusable[f] = err.reason
                continue
            kind = f.suffix.lower().lstrip(".")
            docs = jsonl_documents(f, text, self.text_column) if kind == "jsonl" else [text]
            yield InputFile(str(f), kind, len(data), hashlib.sha256(data).hexdigest(), len(docs)), self._cut(docs)

    def _cut(self, docs: list[str]) -> list[str]:
        """The documents, the only one cut in two by size when ``split_tail`` is set (the second part: validation)."""
        if self.split_tail is None or len(docs) != 1:
            return docs
        return list(split_tail(docs[0], self.split_tail))
