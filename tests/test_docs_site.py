"""The docs site's hook: README sections included in pages, links that still lead somewhere."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "_hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()
REPO = "https://example.invalid/messagebus"


def test_a_section_is_its_readme_body() -> None:
    body = hooks.readme_section("Quickstart", "tutorials/quickstart.md", REPO)
    readme = (ROOT / "README.md").read_text()
    assert "```python" in body
    assert body.splitlines()[0] in readme
    assert "\n## " not in body


def test_an_unknown_section_fails_the_build() -> None:
    with pytest.raises(LookupError, match="no section '## Nonexistent'"):
        hooks.readme_section("Nonexistent", "index.md", REPO)


def test_links_are_rewritten_for_the_page() -> None:
    """Anchors go to the page holding the section, docs/ paths to the site, others to the repo."""
    errors = hooks.readme_section("Errors", "concepts/errors.md", REPO)
    assert f"]({REPO}/blob/main/messagebus/_errors.py)" in errors
    # Without a repository address (none is public yet), the path is shown as text.
    offline = hooks.readme_section("Errors", "concepts/errors.md", None)
    assert "messagebus/_errors.py" in offline
    assert "](messagebus/_errors.py" not in offline
    assert not re.search(r"\]\(#", errors)
    idempotency = hooks.readme_section("Idempotency", "tutorials/quickstart.md", REPO)
    assert "](outbox.md)" in idempotency  # the section "One database ..." lives there


def test_every_readme_section_is_on_a_page() -> None:
    """The site says everything the README says (Status is the README's own)."""
    titles = re.findall(r"^## (.+)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    included = hooks.pages_by_section()
    missing = [title for title in titles if hooks.slug(title) not in included]
    assert missing == ["Status"]


def test_the_page_markdown_hook_replaces_directives() -> None:
    class File:
        src_uri = "concepts/guarantees.md"

    class Page:
        file = File()

    markdown = "# Title\n\n<!-- readme: Delivery guarantees, plainly -->\n"
    out = hooks.on_page_markdown(markdown, page=Page(), config={"repo_url": REPO})
    assert "<!-- readme:" not in out
    assert out.startswith("# Title\n\n")
    assert len(out) > len(markdown)
