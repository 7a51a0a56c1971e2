"""docs/architecture.md against the tree: every path it names exists, and every module of model/, wse/, runtime/ and
benchmarks/ appears in its tables (issue 24: "README's tables match the tree"). Pure Python, no JAX.

A table row under "## Inside `pkg/`" names modules by their file name (`schema.py`); its first cell says where they
live: the subpackages it names (`config/`), else the package itself. Full paths (`runtime/train/faults.py`) may stand
anywhere on the page, and in README.md and the other docs too."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PACKAGES = ("model", "wse", "runtime", "benchmarks")
MODULE = re.compile(r"`([A-Za-z0-9_]+\.(?:py|sh))`")
SUBPACKAGE = re.compile(r"`([A-Za-z0-9_]+)/`")
FULL_PATH = re.compile(r"\b((?:model|wse|runtime|benchmarks|tests)/[A-Za-z0-9_/]*[A-Za-z0-9_]+\.(?:py|sh))\b")


def table_rows():
    """(package, subpackages named in the first cell, the row) for every table row under '## Inside `pkg/`'."""
    package = None
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#+ Inside `(\w+)/`", line)
        if heading or line.startswith("#"):
            package = heading.group(1) if heading else None
        elif package and line.startswith("| `"):
            yield package, SUBPACKAGE.findall(line.split("|")[1]), line


def documented() -> tuple[set[str], list[str]]:
    """The modules the tables name (paths from the root), and the names that resolve to no file."""
    found, missing = set(), []
    for package, subpackages, row in table_rows():
        for name in MODULE.findall(row):
            candidates = [f"{package}/{sub}/{name}" for sub in subpackages] + [f"{package}/{name}"]
            hit = next((c for c in candidates if (ROOT / c).is_file()), None)
            if hit:
                found.add(hit)
            else:
                missing.append(f"{name} (in the {package}/ table, row {row[:50]!r})")
    return found, missing


def modules() -> set[str]:
    """Every module and script of the four packages, as paths from the root (package __init__ files aside)."""
    return {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for pattern in ("*.py", "*.sh")
            for p in (ROOT / pkg).rglob(pattern) if p.name != "__init__.py" and "__pycache__" not in p.parts}


def test_every_module_named_in_the_tables_exists():
    _, missing = documented()
    assert not missing, "docs/architecture.md names modules that do not exist: " + "; ".join(missing)


def test_every_module_appears_in_the_tables():
    found, _ = documented()
    left_out = sorted(modules() - found)
    assert not left_out, "modules missing from docs/architecture.md's tables: " + ", ".join(left_out)


def test_every_full_path_in_the_docs_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    gone = [f"{page.name}: {path}" for page in pages
            for path in sorted(set(FULL_PATH.findall(page.read_text(encoding="utf-8")))) if not (ROOT / path).exists()]
    assert not gone, "paths the docs name that do not exist: " + ", ".join(gone)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_docs_lands_on_a_heading():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    anchors = {page.resolve(): {slug(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines()
                                if re.match(r"#{1,6} ", line)} for page in pages}
    broken = []
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text(encoding="utf-8")):
            dest = (page.parent / target).resolve() if target else page.resolve()
            if dest not in anchors:
                broken.append(f"{page.name}: {target}#{anchor} (no such page)")
            elif anchor not in anchors[dest]:
                broken.append(f"{page.name}: {target}#{anchor}")
    assert not broken, "links to headings that do not exist: " + ", ".join(broken)
