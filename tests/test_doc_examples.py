"""Every Python example in the README and the docs runs as written.

A block runs alone, or after the set-up its ``<!-- example-setup: NAME -->`` comment
names (``docs/examples/NAME.py``, see ``docs/examples/README.md``), in one namespace,
with top-level ``await`` allowed. The README's main examples also have their printed
output checked (``tests/test_readme.py``).
"""

from __future__ import annotations

import ast
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
BLOCK = re.compile(
    r"(?:<!-- example-setup: (?P<setup>[\w-]+) -->\n+)?```python\n(?P<code>.*?)```", re.DOTALL
)


def documents() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield from sorted((ROOT / "docs").rglob("*.md"))


def blocks() -> Iterator[Any]:
    for document in documents():
        text = document.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            name = f"{document.relative_to(ROOT)}:{line}"
            yield pytest.param(match.group("setup"), match.group("code"), id=name)


def run(code: str, namespace: dict[str, Any], filename: str) -> None:
    compiled = compile(code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # the repository's own examples
    if result is not None:  # top-level await: eval returned a coroutine

        async def finish() -> None:
            await result

        anyio.run(finish)


@pytest.mark.parametrize(("setup", "code"), list(blocks()))
def test_example_runs(
    setup: str | None, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples that make files make them here
    module = types.ModuleType("__example__")
    monkeypatch.setitem(sys.modules, "__example__", module)
    namespace = module.__dict__
    before = set(sys.modules)
    try:
        if setup is not None:
            path = EXAMPLES / f"{setup}.py"
            run(path.read_text(encoding="utf-8"), namespace, str(path))
        run(code, namespace, "<example>")
    finally:
        # A set-up may stand in for an application's modules (made by hand, so without a
        # spec): forget them afterwards. Modules really imported stay, as in any test.
        for name in set(sys.modules) - before:
            if sys.modules[name].__spec__ is None:
                del sys.modules[name]


def test_every_setup_is_used() -> None:
    used = {param.values[0] for param in blocks()}
    assert {path.stem for path in EXAMPLES.glob("*.py")} <= used
