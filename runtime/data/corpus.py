"""The built-in corpus "python-docs" and the fine-tuning task set derived from it.

The demo, the tests and the tutorial must run on a fresh machine with no download, so the corpus is real English prose
that every CPython installation already carries:

* ``pydoc_data.topics.topics`` — the language reference's help topics (what ``help("assert")`` prints), one document
  per topic, duplicates (``if``/``else`` share a text) dropped;
* the standard library's docstrings, read with ``ast`` from the source files (nothing is imported, so no module's
  import-time side effects run): one document per public module with its docstring and those of its public classes,
  functions and methods, under pydoc-style headings.

Order is fixed (topics by name, then modules by dotted name), so the same Python installation always gives the same
documents. It differs between Python versions; datasets record a checksum of the text. With CPython 3.11.7: 648
documents (78 topics, 570 modules), 2.21M characters, 655,342 GPT-2 tokens (655,990 with the separators).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import sys
import sysconfig
from pathlib import Path

BUILTIN_CORPORA = ("python-docs",)
# Bump when the extraction rules change: it is part of the cache key of prepared datasets.
CORPUS_VERSION = 1
# Standard-library folders that hold tests, demos or third-party code rather than library documentation.
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "turtledemo", "__pycache__", "lib-dynload"}
# Every tenth task (by a hash of its prompt) is held out, so the split is stable when the task list grows.
_TASK_VAL_MODULUS = 10
# Paragraphs that are version notes or cross references, not a description of the topic.
_NOT_PROSE = ("New in version", "Changed in version", "Deprecated since", "See also", "Note:", "Added in version")


def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_sources() -> list[tuple[str, Path]]:
    """(dotted module name, source path) of the public pure-Python stdlib modules, sorted by name."""
    root = _stdlib_dir()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith((".", "config-")))
        rel = Path(dirpath).relative_to(root)
        if any(part.startswith("_") for part in rel.parts):
            dirnames[:] = []
            continue  # private packages (_pyrepl, __phello__ ...)
        if rel.parts and not (Path(dirpath) / "__init__.py").is_file():
            dirnames[:] = []  # not a package: data or scripts
            continue
        for name in sorted(filenames):
            if not name.endswith(".py") or (name.startswith("_") and name != "__init__.py"):
                continue
            parts = list(rel.parts) + ([] if name == "__init__.py" else [name[:-3]])
            if parts:
                found.append((".".join(parts), Path(dirpath) / name))
    return sorted(found)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return f"({ast.unparse(node.args)})"


def _module_document(module: str, tree: ast.Module) -> str | None:
    """pydoc-style text of one module's docstrings, or None when it has none."""
    sections = []
    doc = ast.get_docstring(tree)
    if doc:
        sections.append(doc)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            fdoc = ast.get_docstring(node)
            if fdoc:
                sections.append(f"{module}.{node.name}{_signature(node)}\n\n{fdoc}")
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            bases = ", ".join(ast.unparse(b) for b in node.bases)
            cdoc = ast.get_docstring(node)
            methods = []
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (not item.name.startswith("_") or item.name == "__init__"):
                    mdoc = ast.get_docstring(item)
                    if mdoc:
                        methods.append(f"{module}.{node.name}.{item.name}{_signature(item)}\n\n{mdoc}")
            if cdoc or methods:
                head = f"class {module}.{node.name}" + (f"({bases})" if bases else "")
                sections.append(head + (f"\n\n{cdoc}" if cdoc else ""))
                sections.extend(methods)
    if not sections:
        return None
    title = f"Module {module}"
    return "\n\n".join([title + "\n" + "=" * len(title)] + sections) + "\n"


def _pydoc_topics() -> dict[str, str]:
    """pydoc's topics; some distributions package them separately, and then the corpus is the docstrings alone."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return {}
    return topics


def _topic_items() -> list[tuple[str, str]]:
    """(topic name, text) of pydoc's help topics, sorted, with repeated texts kept once."""
    topics = _pydoc_topics()

    seen, items = set(), []
    for name in sorted(topics):
        text = topics[name]
        if text.strip() and text not in seen:
            seen.add(text)
            items.append((name, text))
    return items


@functools.lru_cache(maxsize=1)
def _modules() -> tuple[tuple[str, str, str], ...]:
    """(dotted name, module docstring, document) of every stdlib module with docstrings; parsing is the slow part."""
    out = []
    for module, path in _stdlib_sources():
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):  # a file for another Python version, or with a NUL byte
            continue
        doc = _module_document(module, tree)
        if doc:
            out.append((module, ast.get_docstring(tree) or "", doc))
    return tuple(out)


def _python_docs() -> tuple[str, ...]:
    return tuple(text for _, text in _topic_items()) + tuple(doc for _, _, doc in _modules())


def _check_name(name: str) -> None:
    if name not in BUILTIN_CORPORA:
        from runtime.errors import UserError

        raise UserError(f"unknown built-in corpus {name!r}; choose one of: {', '.join(BUILTIN_CORPORA)}")


def documents(name: str = "python-docs") -> list[str]:
    """The corpus as separate documents, in a fixed order (parses ~700 stdlib files: a few seconds, then cached)."""
    _check_name(name)
    return list(_python_docs())


def fingerprint(name: str = "python-docs") -> str:
    """A cheap key that changes whenever the corpus could: extraction rules, Python version, topics, stdlib files.

    Built from file sizes and modification times rather than contents so that a cache hit costs no parsing.
    """
    _check_name(name)
    topics = _pydoc_topics()
    h = hashlib.sha256(f"{name}|{CORPUS_VERSION}|{sys.version}|{_stdlib_dir()}".encode())
    h.update(hashlib.sha256(repr(sorted(topics.items())).encode()).digest())
    for module, path in _stdlib_sources():
        st = path.stat()
        h.update(f"{module}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _first_prose_paragraph(text: str) -> str | None:
    """The first paragraph that is prose (not an indented grammar or code block), reflowed onto one line."""
    for para in re.split(r"\n\s*\n", text):
        lines = [ln for ln in para.split("\n") if ln.strip()]
        if not lines or lines[0][:1].isspace() or set(lines[0].strip()) <= set("*=-"):
            continue
        if lines[0].startswith(_NOT_PROSE):
            continue
        return " ".join(ln.strip() for ln in lines)
    return None


def _task_records() -> list[dict]:
    records, seen = [], set()
    for _, text in _topic_items():
        title, _, body = text.partition("\n")
        body = body.lstrip("*\n")  # the title's underline
        prompt = title.replace('"', "").strip()
        para = _first_prose_paragraph(body)
        if para and prompt not in seen:
            seen.add(prompt)
            records.append({"prompt": prompt, "completion": "\n" + para})
    for module, doc, _ in _modules():
        para = _first_prose_paragraph(doc)
        prompt = f"The {module} module"
        if para and len(para) >= 20 and prompt not in seen:
            seen.add(prompt)
            records.append({"prompt": prompt, "completion": "\n" + para})
    return records


@functools.lru_cache(maxsize=1)
def _tasks() -> tuple[tuple[dict, bool], ...]:
    out = []
    for rec in _task_records():
        is_val = int(hashlib.sha256(rec["prompt"].encode()).hexdigest()[:8], 16) % _TASK_VAL_MODULUS == 0
        out.append((rec, is_val))
    return tuple(out)


def builtin_tasks(split: str | None = None) -> list[dict]:
    """The built-in fine-tuning task set: ``{"prompt", "completion"}`` records derived from python-docs.

    Prompt: a help topic's title without quotes (``The assert statement``) or ``The <module> module``; completion: a
    newline, then the first prose paragraph of that documentation, on one line. So after fine-tuning,
    ``generate_text("The assert statement")`` continues with what the documentation says. The fine-tuner adds the
    ``<|endoftext|>`` after each completion. ``split``: None (all), ``"train"`` or ``"val"`` (about 10%, chosen by a
    hash of the prompt so the split does not move when tasks are added).
    """
    if split not in (None, "train", "val"):
        from runtime.errors import UserError

        raise UserError(f"unknown task split {split!r}; choose train or val")
    return [dict(rec) for rec, is_val in _tasks() if split is None or is_val == (split == "val")]
