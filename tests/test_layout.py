"""The code's floor plan, checked from the source (read with ``ast``; nothing is imported): no two modules import each
other, directly or round a longer circle; dependencies point one way (benchmarks -> runtime -> model, wse); no
private name (``_name``) is imported across modules; no module is over 400 lines and no function over 60 (the
developers' guide).

Every import statement counts, at module level, inside a function (a function-level import delays a circle, it does
not remove it) or under ``if TYPE_CHECKING:``. An import names one module: ``from runtime.config import schema`` the
module runtime.config.schema, ``from runtime.config import RunConfig`` the package runtime.config (its
``__init__.py``).

The circle and size checks cover ``LAID_OUT``, the packages whose floor plans are done; the others cover every
package. ``WSE_LAYOUT_PACKAGES=model,wse,runtime,benchmarks python -m pytest tests/test_layout.py`` checks another list
without editing this file.
"""

from __future__ import annotations

import ast
import os
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "wse", "runtime", "benchmarks")
LAID_OUT = ("model", "wse", "runtime", "benchmarks")
if os.environ.get("WSE_LAYOUT_PACKAGES"):
    LAID_OUT = tuple(os.environ["WSE_LAYOUT_PACKAGES"].split(","))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# What each package may not import (the guide: benchmarks -> runtime -> (wse, model); wse is NumPy only).
FORBIDDEN = {"wse": ("jax", "flax", "optax", "model", "runtime", "benchmarks"),
             "model": ("wse", "runtime", "benchmarks"),
             "runtime": ("benchmarks",)}


@cache
def modules(packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """{dotted module name: file} of every module of ``packages`` (a package is its ``__init__.py``)."""
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(name: str, path: Path) -> list[tuple[str, list[tuple[str, str]], int]]:
    """(module imported from, [(name imported, name it is bound to)], line) for every import statement of the module
    ``name`` at ``path``; ``import a.b`` is ("a.b", [], line) and binds ``a``. Relative imports are made absolute."""
    out = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = ".".join(filter(None, (package, base)))
            out.append((base, [(alias.name, alias.asname or alias.name) for alias in node.names], node.lineno))
    return out


def bound_modules(name: str, path: Path) -> dict[str, str]:
    """{name in the module: module of ours it is bound to} for ``import x.y as z``, ``from x import y`` (a module)."""
    ours, bound = modules(), {}
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                full = alias.name if alias.asname else alias.name.partition(".")[0]
                if full in ours:
                    bound[alias.asname or full] = full
    for base, names, _ in imports(name, path):
        for imported, as_name in names:
            if f"{base}.{imported}" in ours:
                bound[as_name] = f"{base}.{imported}"
    return bound


def edges(packages: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """{module: {module it imports: line}} within ``packages``: ``from X import Y`` names X.Y when that is a module
    (a submodule), else X; a name not in the packages (numpy, jax) is left out."""
    mods = modules(packages)

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in mods:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for name, path in mods.items():
        for base, names, line in imports(name, path):
            for target in [f"{base}.{n}" if f"{base}.{n}" in mods else base for n, _ in names] or [base]:
                target = owner(target)
                if target and target != name:
                    graph[name].setdefault(target, line)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles():
    graph = edges(LAID_OUT)
    report = []
    for component in circles(graph):
        inside = [f"{a} -> {b} ({modules(LAID_OUT)[a].relative_to(ROOT)}:{line})"
                  for a in component for b, line in sorted(graph[a].items()) if b in component]
        report.append("circle of " + ", ".join(component) + ": " + "; ".join(inside))
    assert not report, "\n".join(report)


def test_circles_are_found():
    """The check itself: a two-module circle, a longer one and a self-contained chain."""
    graph = {"a": {"b": 1}, "b": {"a": 1}, "c": {"d": 1}, "d": {"e": 1}, "e": {"c": 1}, "f": {"a": 1}, "g": {}}
    assert sorted(circles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_dependencies_point_one_way():
    wrong = []
    for name, path in modules().items():
        package = name.partition(".")[0]
        for base, _, line in imports(name, path):
            if base.partition(".")[0] in FORBIDDEN.get(package, ()):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {base}")
    assert not wrong, "\n".join(wrong)


def test_no_private_names_imported_across_modules():
    """``from x import _name`` from a module of ours, or ``x._name`` on one, in every package."""
    wrong = []
    for name, path in modules().items():
        for base, names, line in imports(name, path):
            if base.partition(".")[0] in PACKAGES:
                wrong += [f"{path.relative_to(ROOT)}:{line} imports {imported} from {base}"
                          for imported, _ in names if imported.startswith("_")]
        bound = bound_modules(name, path)
        for node in ast.walk(tree(path)):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {bound[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_module_and_function_sizes():
    big = []
    for name, path in modules(LAID_OUT).items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            big.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines "
                               f"(at most {MAX_FUNCTION_LINES})")
    assert not big, "\n".join(big)
