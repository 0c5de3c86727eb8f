"""The package's import graph has no cycle: a module never needs, directly or through others, a module that
needs it. Every import counts, also one deferred into a function (it hides a cycle, it does not remove it),
and importing P.Q also runs P's ``__init__`` (except where P is a package the importer is inside: it is being
initialized already); only imports under ``if TYPE_CHECKING:`` are left out, since they never run."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import landform

PACKAGE = Path(landform.__file__).parent


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not ``.__init__``)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


@functools.cache
def _tree(path: Path) -> ast.Module:
    """A module's syntax tree, parsed once per run (every test here walks the whole package)."""
    return ast.parse(path.read_text())


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module, those under ``if TYPE_CHECKING:`` left out."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from a import b`` is an edge to ``a.b`` where that is a
    module, else to ``a``), and the packages whose ``__init__`` that import runs."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in _runtime_imports(_tree(path)):
            if isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
                continue
            if node.level:
                base = package[:len(package) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if target in modules:
                    graph[name].add(target)
                elif source in modules:
                    graph[name].add(source)
        for target in list(graph[name]):
            parts = target.split(".")
            graph[name].update(package for package in (".".join(parts[:i]) for i in range(2, len(parts)))
                               if package in modules and not name.startswith(package + "."))
        graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None (depth-first, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return [*path[path.index(step):], step]
            elif step not in state:
                state[step] = 1
                path.append(step)
                stack.append(iter(sorted(graph[step])))
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_finds_a_cycle_and_follows_deferred_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    source = "if TYPE_CHECKING:\n    import x\nelse:\n    import y\ndef f():\n    from z import w\n"
    names = [ast.unparse(node) for node in _runtime_imports(ast.parse(source))]
    assert names == ["import y", "from z import w"]
    graph = import_graph()
    assert "landform.inference" in graph["landform.fitting"]  # the graph sees the package's real imports


def test_no_module_but_the_helper_imports_tqdm():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "progress.py":
            continue
        for node in _runtime_imports(_tree(path)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(name == "tqdm" or name.startswith("tqdm.") for name in names):
                offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert not offenders, f"use landform.progress.progress_bar instead of tqdm in {offenders}"


def test_no_module_imports_a_private_name_of_another_module():
    """A module's private names are its own: another module that needs one gets a public name instead."""
    private = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.module}.{alias.name}"
               for path in _modules().values() for node in ast.walk(_tree(path))
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("landform")
               for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not private, private
