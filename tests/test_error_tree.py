"""The error tree covers every error the library raises, and its drawing tells the truth.

Two mechanical checks on ``messagebus/_errors.py``'s promise ("catch MessageBusError to
catch everything the library raises on its own account"):

- a walk of the package source with :mod:`ast` finds every ``raise`` that constructs a
  built-in exception class, and fails on any not in :data:`ALLOWED` (which says why each
  one stays);
- the tree drawn in the module docstring is parsed and compared with the classes: the
  same names as ``__all__``, every parent drawn is the real base, every "(also a X)" is
  true.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import messagebus
from messagebus import _errors
from messagebus._errors import (
    ArgumentTypeError,
    ConfigurationError,
    InvalidArgumentError,
    MessageBusError,
    SchemaVersionError,
)
from messagebus._retry_policy import NEVER_RETRIED

PACKAGE = Path(messagebus.__file__).parent

PROTOCOL_SIGNALS = frozenset({"NotImplementedError", "StopIteration", "StopAsyncIteration"})
"""Built-ins Python's own protocols call for; they are signals, not the library's errors."""

CHECKS = "messagebus/testing/"
"""The conformance checks fail with AssertionError, as pytest and trio.testing do."""

ALLOWED: tuple[tuple[str, str], ...] = (
    # Stay, on purpose.
    # A missing optional extra is an ImportError, as Python reports any missing module.
    ("messagebus/otel/__init__.py", 'raise ImportError("messagebus.otel needs OpenTelemetry'),
    # The demo's own check of its story; fail_after fires first, so it never runs.
    ("messagebus/demo/_story.py", "raise AssertionError(what)"),
)
"""``(path, start of the raise statement)``: built-in raises that may stay, one entry each.

The text is matched against the statement with its whitespace collapsed, so a reformat
does not break an entry; two identical statements need two entries."""


class BuiltinRaise(NamedTuple):
    """A ``raise`` that constructs a built-in exception class."""

    path: str
    line: int
    text: str


def builtin_raises(source: str, path: str = "<string>") -> list[BuiltinRaise]:
    """Return the raises in ``source`` that construct a built-in exception.

    Not counted: a bare ``raise``, ``raise error`` of a name that is not a built-in (a
    caught exception, a tree error), a raise of a call's result, the protocol signals,
    ``AttributeError`` in a module's or class's ``__getattr__``, and ``AssertionError``
    in the conformance checks.
    """
    finder = _Finder(source, path)
    finder.visit(ast.parse(source))
    return finder.found


class _Finder(ast.NodeVisitor):
    def __init__(self, source: str, path: str) -> None:
        self.source = source
        self.path = path
        self.functions: list[str] = []
        self.found: list[BuiltinRaise] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._in_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._in_function(node)

    def _in_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    def visit_Raise(self, node: ast.Raise) -> None:
        name = _builtin_exception(node.exc)
        if name is None or name in PROTOCOL_SIGNALS:
            return
        if name == "AttributeError" and self.functions[-1:] == ["__getattr__"]:
            return
        if name == "AssertionError" and self.path.startswith(CHECKS):
            return
        segment = ast.get_source_segment(self.source, node) or ast.unparse(node)
        self.found.append(BuiltinRaise(self.path, node.lineno, _collapse(segment)))


def _builtin_exception(raised: ast.expr | None) -> str | None:
    """Return the built-in exception class ``raised`` names or calls, if it does."""
    target = raised.func if isinstance(raised, ast.Call) else raised
    if isinstance(target, ast.Name):
        name = target.id
    elif (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "builtins"
    ):
        name = target.attr
    else:
        return None
    value = getattr(builtins, name, None)
    return name if isinstance(value, type) and issubclass(value, BaseException) else None


def _collapse(text: str) -> str:
    """Return ``text`` on one line: whitespace runs are one space, none inside brackets."""
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"([(\[{]) | ([)\]}])", r"\1\2", text)


def unallowed(
    found: Iterable[BuiltinRaise], allowed: Iterable[tuple[str, str]]
) -> tuple[list[BuiltinRaise], list[tuple[str, str]]]:
    """Match ``found`` against ``allowed``, each entry covering one raise.

    Returns the raises no entry covers, and the entries that covered nothing (stale).
    """
    left = Counter(allowed)
    uncovered = []
    for site in found:
        entry = next(
            (
                (path, text)
                for (path, text), count in left.items()
                if count and path == site.path and text in site.text
            ),
            None,
        )
        if entry is None:
            uncovered.append(site)
        else:
            left[entry] -= 1
    return uncovered, sorted(left.elements())


def package_raises() -> Iterator[BuiltinRaise]:
    """Yield the built-in raises of every module of the installed package."""
    for file in sorted(PACKAGE.rglob("*.py")):
        path = file.relative_to(PACKAGE.parent).as_posix()
        yield from builtin_raises(file.read_text(encoding="utf-8"), path)


class TestBuiltinRaises:
    """builtin_raises() finds what the package rule forbids, and only that."""

    def test_a_new_value_error_is_found(self) -> None:
        """Adding ``raise ValueError(...)`` to library code is caught, with where it is."""
        source = "def pick(n):\n    if n < 0:\n        raise ValueError(f'n: {n}')\n"
        assert builtin_raises(source, "messagebus/_x.py") == [
            BuiltinRaise("messagebus/_x.py", 3, "raise ValueError(f'n: {n}')")
        ]

    @pytest.mark.parametrize(
        "statement",
        [
            "raise ValueError",
            "raise RuntimeError('x') from None",
            "raise builtins.TypeError('x')",
            "raise LookupError(key)",
            "raise KeyError(key)",
            "raise AssertionError('x')",
            "raise AttributeError(name)",
        ],
    )
    def test_every_builtin_exception_counts(self, statement: str) -> None:
        """A built-in class counts whether called or not, and with or without a cause."""
        found = builtin_raises(f"def f():\n    {statement}\n", "messagebus/_x.py")
        assert [site.text for site in found] == [statement]

    @pytest.mark.parametrize(
        "statement",
        [
            "raise",
            "raise error",
            "raise InvalidArgumentError('x')",
            "raise self._unsendable(command) from None",
            "raise NotImplementedError",
            "raise StopAsyncIteration",
            "raise anyio.ClosedResourceError",
        ],
    )
    def test_what_is_not_the_librarys_own_builtin_does_not_count(self, statement: str) -> None:
        """Bare re-raises, caught names, tree errors, calls and protocol signals pass."""
        source = (
            f"def f(error):\n    try:\n        pass\n    except Exception:\n        {statement}\n"
        )
        assert builtin_raises(source, "messagebus/_x.py") == []

    def test_attribute_error_is_for_getattr_only(self) -> None:
        """A module's __getattr__ must raise AttributeError; any other function may not."""
        source = (
            "def __getattr__(name):\n    raise AttributeError(name)\n"
            "def lookup(name):\n    raise AttributeError(name)\n"
        )
        assert [site.line for site in builtin_raises(source, "messagebus/_x.py")] == [4]

    def test_assertion_error_is_for_the_checks_only(self) -> None:
        """The conformance checks fail as assertions; the rest of the package may not."""
        source = "def check():\n    raise AssertionError('lost a message')\n"
        assert builtin_raises(source, "messagebus/testing/_checks.py") == []
        assert len(builtin_raises(source, "messagebus/_bus.py")) == 1

    def test_a_statement_over_lines_is_matched_on_one(self) -> None:
        """The text is the statement on one line, as the format may split it anywhere."""
        source = 'def f():\n    raise ValueError(\n        "a"\n        "b"\n    )\n'
        assert builtin_raises(source)[0].text == 'raise ValueError("a" "b")'


class TestAllowlist:
    """unallowed() covers one raise per entry, in its own file only."""

    SITE = BuiltinRaise("messagebus/_x.py", 3, 'raise ValueError("bad")')

    def test_an_entry_covers_its_raise(self) -> None:
        """An entry whose text starts the statement, in the same file, covers it."""
        assert unallowed([self.SITE], [("messagebus/_x.py", "raise ValueError(")]) == ([], [])

    def test_an_entry_does_not_cover_another_file(self) -> None:
        """The same statement in another file is not covered, and the entry is stale."""
        entry = ("messagebus/_y.py", "raise ValueError(")
        assert unallowed([self.SITE], [entry]) == ([self.SITE], [entry])

    def test_an_entry_covers_one_raise_only(self) -> None:
        """A second identical raise needs its own entry."""
        twin = self.SITE._replace(line=9)
        entry = ("messagebus/_x.py", 'raise ValueError("bad")')
        assert unallowed([self.SITE, twin], [entry]) == ([twin], [])
        assert unallowed([self.SITE, twin], [entry, entry]) == ([], [])


class TestPackageRaises:
    """The package raises its own errors, apart from the entries of ALLOWED."""

    def test_no_builtin_raise_outside_the_allowlist(self) -> None:
        """Every error raised on the library's own account is in the MessageBusError tree.

        Pick a class from ``messagebus/_errors.py`` (InvalidArgumentError for a bad value,
        ArgumentTypeError for a bad type, or a new one drawn in its tree).
        """
        uncovered, _ = unallowed(package_raises(), ALLOWED)
        assert [f"{site.path}:{site.line}: {site.text}" for site in uncovered] == []

    def test_no_allowlist_entry_is_stale(self) -> None:
        """An entry whose raise was converted or moved is removed, so the list only shrinks."""
        _, stale = unallowed(package_raises(), ALLOWED)
        assert stale == []


def drawn_tree() -> dict[str, tuple[str | None, str]]:
    """Return each class drawn in the errors module's tree: its drawn parent and its note."""
    doc = _errors.__doc__ or ""
    block = doc.split("The tree::\n\n", 1)[1].split("\n\n", 1)[0]
    tree: dict[str, tuple[str | None, str]] = {}
    path: list[str] = []
    for line in block.splitlines():
        match = re.fullmatch(r"    (?P<branch>[│├└─ ]*)(?P<name>\w+)\s*(?P<note>.*)", line)
        assert match is not None, line
        depth = len(match["branch"]) // 4
        del path[depth:]
        tree[match["name"]] = (path[-1] if path else None, match["note"])
        path.append(match["name"])
    return tree


class TestDrawnTree:
    """The tree in the errors module's docstring is the tree of the classes."""

    def test_the_drawing_names_exactly_the_exported_classes(self) -> None:
        """Every class in __all__ is drawn, and nothing drawn is missing from __all__."""
        assert sorted(drawn_tree()) == sorted(_errors.__all__)

    @pytest.mark.parametrize("name", _errors.__all__)
    def test_every_exported_class_derives_from_the_root(self, name: str) -> None:
        """Catching MessageBusError catches every class the module exports."""
        error = getattr(_errors, name)
        assert isinstance(error, type)
        assert issubclass(error, MessageBusError)

    @pytest.mark.parametrize(
        ("name", "drawn"), sorted(drawn_tree().items()), ids=sorted(drawn_tree())
    )
    def test_every_class_sits_where_it_is_drawn(
        self, name: str, drawn: tuple[str | None, str]
    ) -> None:
        """The drawn parent is a direct base, and an "(also a X)" note is true."""
        parent, note = drawn
        error = getattr(_errors, name)
        assert parent is None or getattr(_errors, parent) in error.__bases__
        for builtin in re.findall(r"\(also an? (\w+)\)", note):
            assert issubclass(error, getattr(builtins, builtin))

    @pytest.mark.parametrize(
        ("error", "builtin"), [(InvalidArgumentError, ValueError), (ArgumentTypeError, TypeError)]
    )
    def test_argument_errors_keep_their_builtin(
        self, error: type[Exception], builtin: type[Exception]
    ) -> None:
        """``except ValueError`` / ``except TypeError`` around a call keep working."""
        assert issubclass(error, builtin)
        assert issubclass(error, ConfigurationError)

    @pytest.mark.parametrize("error", [InvalidArgumentError, ArgumentTypeError, SchemaVersionError])
    def test_a_bad_call_or_schema_is_never_retried(self, error: type[Exception]) -> None:
        """Running a handler again cannot fix a bad argument or a newer table."""
        assert issubclass(error, NEVER_RETRIED)
