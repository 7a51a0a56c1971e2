"""The simulator's floor plan, read from its import statements: neither wing imports the other, the shared floor
imports no wing, nothing in wse/ imports JAX, model/, runtime/ or benchmarks/, and no private name crosses modules."""

import ast
from pathlib import Path

import pytest

import wse

ROOT = Path(wse.__file__).parent
FLOOR = ("assumptions", "costs", "errors", "grid", "partition", "plans", "schedule", "shape")
WINGS = ("wafer", "devices")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import statement in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            names = [alias.name for alias in node.names]
            found.append((node.module, names, node.lineno))
            if node.module == "wse":  # `from wse import devices` imports the module wse.devices
                found += [(f"wse.{n}", [], node.lineno) for n in names]
    return found


SOURCES = sorted(ROOT.rglob("*.py"))


def test_the_layout_holds_the_modules_it_names():
    names = {module_name(p) for p in SOURCES}
    assert {f"wse.{m}" for m in FLOOR} | {"wse.plan", "wse.wafer.systems", "wse.devices.cost_model",
                                           "wse.validation.compare"} <= names


@pytest.mark.parametrize("wing", WINGS)
def test_a_wing_never_imports_the_other(wing):
    other = next(w for w in WINGS if w != wing)
    for path in sorted((ROOT / wing).rglob("*.py")):
        for module, _, line in imports(path):
            assert not (module == f"wse.{other}" or module.startswith(f"wse.{other}.")), \
                f"{path}:{line}: the {wing} wing imports {module}"


def test_the_floor_imports_no_wing_and_no_entry():
    for name in FLOOR:
        path = ROOT / f"{name}.py"
        for module, _, line in imports(path):
            top = module.split(".")[:2]
            assert top[0] != "wse" or len(top) == 1 or top[1] in FLOOR, f"{path}:{line}: the floor imports {module}"


def test_no_jax_model_runtime_or_benchmarks_and_no_private_names():
    for path in SOURCES:
        for module, names, line in imports(path):
            assert module.split(".")[0] not in ("jax", "jaxlib", "flax", "optax", "model", "runtime", "benchmarks"), \
                f"{path}:{line}: wse/ imports {module}"
            if module.startswith("wse"):
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{path}:{line}: private name(s) {private} imported from {module}"
