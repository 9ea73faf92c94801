"""The docs show the code that CI runs, as it is."""

from __future__ import annotations

import re
from pathlib import Path

import _messagebus_pytestplugin

ROOT = Path(__file__).resolve().parent.parent
TESTING = ROOT / "docs" / "testing.md"


def included(doc: str, path: str) -> str:
    """Return the code block of ``doc`` between the begin and end markers of ``path``."""
    found = re.search(
        rf"<!-- begin {re.escape(path)} -->\n```python\n(.*?)```\n<!-- end {re.escape(path)} -->",
        doc,
        re.DOTALL,
    )
    assert found is not None, f"docs/testing.md does not include {path}"
    return found.group(1)


class TestTestingDocs:
    """docs/testing.md, "Testing your application"."""

    def test_shows_the_test_module_verbatim(self) -> None:
        """The complete module on the page is tests/test_docs_testing.py, byte for byte."""
        module = (ROOT / "tests" / "test_docs_testing.py").read_text()
        assert included(TESTING.read_text(), "tests/test_docs_testing.py") == module

    def test_names_every_fixture_of_the_plugin(self) -> None:
        """Each fixture the plugin offers has a row in the page's table."""
        doc = TESTING.read_text()
        missing = [name for name in _messagebus_pytestplugin.__all__ if f"| `{name}` |" not in doc]
        assert missing == []
