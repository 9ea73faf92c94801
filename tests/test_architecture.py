"""The package's layout rules, checked on its source (see docs/architecture.md)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "messagebus"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def run_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement that may run, at any depth, except ``if TYPE_CHECKING:`` bodies."""
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from run_time_statements(node.orelse)
            continue
        yield node
        yield from run_time_statements(
            [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
        )


def imported_modules(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules that running ``source`` (module ``name``) imports, anywhere."""
    found: set[str] = set()
    for node in run_time_statements(ast.parse(source).body):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        for target in targets:
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                prefix = ".".join(parts[:end])
                # A module's own ancestors are imported before it, never because of it.
                if prefix in known and prefix != name and not name.startswith(prefix + "."):
                    found.add(prefix)
    return found


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the package modules it imports at run time (function bodies included)."""
    known = set(modules)
    return {
        name: imported_modules(source, name, source_is_package(name, modules), known)
        for name, source in modules.items()
    }


def source_is_package(name: str, modules: dict[str, str]) -> bool:
    return any(other.startswith(name + ".") for other in modules)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


class TestImportCycles:
    """No module imports, even from inside a function, a module that imports it back."""

    def test_the_package_has_no_run_time_import_cycle(self) -> None:
        """Every import that can run (TYPE_CHECKING blocks excepted) forms a DAG."""
        modules = {name: path.read_text() for name, path in sources().items()}
        assert cycles(import_graph(modules)) == []

    def test_the_check_finds_a_cycle_hidden_in_a_function(self) -> None:
        """The check is not blind: a function-local import that closes a loop is found."""
        modules = {
            "pkg": "",
            "pkg.a": "from pkg.b import thing\n",
            "pkg.b": "def thing():\n    from pkg.a import other\n",
            "pkg.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
        }
        assert cycles(import_graph(modules)) == [["pkg.a", "pkg.b"]]


class TestBoundaries:
    """Who may touch what: the run object, the bus's privates, method swaps."""

    def test_only_the_dispatch_package_knows_runs(self) -> None:
        """The run's layout and ``current_run`` are imported by the dispatcher alone."""
        importers = {
            name
            for name, path in sources().items()
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            and node.module == "messagebus._dispatch._run"
            and {alias.name for alias in node.names}
            & {"Run", "current_run", "MESSAGE", "PARENT", "ENVELOPE", "CONTEXT", "HANDLER"}
        }
        assert importers == {"messagebus._dispatch._dispatcher"}

    @pytest.mark.parametrize("owner", ["bus", "self.bus", "self._bus"])
    def test_no_module_reaches_into_the_bus(self, owner: str) -> None:
        """Outside the bus and its dispatcher, nothing reads ``bus._anything``."""
        offenders = [
            f"{name}:{node.lineno}: {ast.unparse(node)}"
            for name, path in sources().items()
            if name not in {"messagebus._bus", "messagebus._dispatch._dispatcher"}
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and ast.unparse(node.value) == owner
        ]
        assert offenders == []

    def test_no_method_is_swapped_on_an_instance(self) -> None:
        """Behaviour comes from composition: no ``type: ignore[method-assign]`` anywhere."""
        swaps = [
            name for name, path in sources().items() if "ignore[method-assign]" in path.read_text()
        ]
        assert swaps == []
