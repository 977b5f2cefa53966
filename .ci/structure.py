"""The package's import graph and the rules it must keep, read from the source with ast.

usage: python .ci/structure.py [--graph]

Checks, over every module of matderiv/ (.py, and .pyx as import targets):
  * no import cycle (imports inside functions count: a deferred import is still an edge);
  * no private name (an underscore-named function, class or constant, not a module)
    imported from another module, or used as module._name through an imported module;
    underscore *modules* (_validation, _memory, _batch, _kernels, ...) are the private
    layer every module may import;
  * no module over MAX_LINES lines, no function over MAX_FUNCTION_LINES lines.
--graph prints every edge.  Exit status 1 when a rule is broken.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 450
MAX_FUNCTION_LINES = 60
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "matderiv"


def module_names() -> dict[str, Path]:
    """Dotted module name -> file, for every .py and .pyx under the package."""
    names = {}
    for path in sorted((ROOT / PACKAGE).rglob("*")):
        if path.suffix not in (".py", ".pyx") or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def resolve(module: str, level: int, current: str, is_package: bool) -> str:
    """The absolute name of a (possibly relative) import target seen in `current`."""
    if level == 0:
        return module
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def read(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[str]]:
    """(modules `name` imports, private names it takes from other modules)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    edges, private, aliases = set(), [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    edges.add(alias.name)
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node.module or "", node.level, name, is_package)
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in modules:
                    edges.add(full)
                    aliases[alias.asname or alias.name] = full
                else:
                    edges.add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append(f"{name} imports {alias.name} from {target}")
    for node in ast.walk(tree):  # module._name through an imported module
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            attr, owner = node.attr, aliases[node.value.id]
            if attr.startswith("_") and not attr.startswith("__") and f"{owner}.{attr}" not in modules:
                private.append(f"{name} uses {owner}.{attr}")
    return {e for e in edges if e != name}, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def sizes(modules: dict[str, Path]) -> list[str]:
    """Modules and functions over the size limits."""
    problems = []
    for name, path in modules.items():
        if path.suffix != ".py":
            continue
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            problems.append(f"{name}: {text.count(chr(10))} lines (limit {MAX_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{name}.{node.name}: {length} lines (limit {MAX_FUNCTION_LINES})")
    return problems


def main() -> int:
    modules = module_names()
    graph, private = {}, []
    for name, path in modules.items():
        if path.suffix == ".py":
            graph[name], taken = read(name, path, modules)
            private += taken
        else:
            graph[name] = set()
    if "--graph" in sys.argv:
        for name in sorted(graph):
            print(f"{name} -> {', '.join(sorted(graph[name])) or '-'}")
    loops = cycles(graph)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in loops] + [f"private name: {p}" for p in private]
    problems += [f"too long: {p}" for p in sizes(modules)]
    edges = sum(len(e) for e in graph.values())
    print(f"structure: {len(modules)} modules, {edges} import edges, {len(loops)} cycles, "
          f"{len(private)} private names across modules, {len(problems) - len(loops) - len(private)} over size")
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
