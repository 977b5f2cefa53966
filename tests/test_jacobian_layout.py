"""The modules of matderiv.jacobian: no import cycle among them (function-local imports
count), and no private module-level name (_name) of one module used in another."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import types
from pathlib import Path

import matderiv.jacobian

PACKAGE = "matderiv.jacobian"
MODULES = {p.stem: ast.parse(p.read_text()) for p in Path(matderiv.jacobian.__file__).parent.glob("*.py")}


def imported(tree: ast.Module) -> list[tuple[str, str, str]]:
    """(module, name, local alias) of every `from ... import name` anywhere in the tree."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), PACKAGE)
            found += [(module, a.name, a.asname or a.name) for a in node.names]
    return found


def test_no_import_cycle_inside_the_package():
    deps = {}
    for name, tree in MODULES.items():
        targets = {f"{module}.{item}" if module == PACKAGE else module for module, item, _ in imported(tree)}
        deps[name] = {t.rpartition(".")[2] for t in targets if t.rpartition(".")[0] == PACKAGE} - {name}
    remaining = dict(deps)
    while remaining:  # take away the modules whose imports are all taken away already
        ready = [m for m, d in remaining.items() if not d & remaining.keys()]
        assert ready, f"an import cycle among {sorted(remaining)}: {remaining}"
        for m in ready:
            del remaining[m]


def test_no_private_name_is_used_across_modules():
    for name, tree in MODULES.items():
        modules = set()
        for module, item, alias in imported(tree):
            obj = getattr(importlib.import_module(module), item)
            if isinstance(obj, types.ModuleType):
                modules.add(alias)
            else:
                assert not item.startswith("_"), f"{name} imports the private {module}.{item}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                attr = node.attr
                assert not attr.startswith("_") or attr.startswith("__"), f"{name} uses {node.value.id}.{attr}"
