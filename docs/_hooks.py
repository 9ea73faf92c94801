"""MkDocs hook: pages take sections of the README, which stays the one source of them.

A line ``<!-- readme: Section title -->`` in a page becomes the body of the README's
``## Section title`` section (up to the next ``## ``), so the site and the README never
say two different things, and the README's examples (run by the test suite) are the
site's. A title that the README does not have fails the build, and so does a README
link to a section (``#anchor``) that no page includes.
"""

from __future__ import annotations

import posixpath
import re
from functools import cache
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
README = DOCS.parent / "README.md"
DIRECTIVE = re.compile(r"^<!-- readme: (?P<title>.+?) -->$", re.MULTILINE)
ANCHOR = re.compile(r"\]\(#(?P<slug>[^)]+)\)")
RELATIVE = re.compile(
    r"\[(?P<text>[^\]]*)\]\((?!https?:|#|mailto:)(?P<path>[^)#]+)(?P<fragment>#[^)]*)?\)"
)


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


@cache
def pages_by_section() -> dict[str, str]:
    """Map each included section's anchor to the page (relative to docs/) including it."""
    found = {}
    for page in sorted(DOCS.rglob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            found[slug(match.group("title"))] = page.relative_to(DOCS).as_posix()
    return found


def readme_section(title: str, page: str, repo_url: str | None) -> str:
    """Return the body of the README's ``## title`` section, as ``page`` includes it.

    Links are rewritten for the page: a section anchor to the page including that
    section, ``docs/...`` to the site's own page, any other repository path to the
    file in the repository at ``repo_url``, or, without one (the project has no public
    address yet), to its path as text.
    """
    text = README.read_text(encoding="utf-8")
    marker = f"\n## {title}\n"
    if marker not in text:
        raise LookupError(f"README.md has no section '## {title}'")
    body = text.split(marker, 1)[1].split("\n## ", 1)[0].strip("\n")

    def relink(match: re.Match[str]) -> str:
        target = pages_by_section().get(match.group("slug"))
        if target is None:
            raise LookupError(f"README link #{match.group('slug')} is on no page of the site")
        return "](" + posixpath.relpath(target, posixpath.dirname(page) or ".") + ")"

    def relocate(match: re.Match[str]) -> str:
        text, path = match.group("text"), match.group("path")
        fragment = match.group("fragment") or ""
        if path.startswith("docs/"):
            here = posixpath.dirname(page) or "."
            target = posixpath.relpath(path.removeprefix("docs/"), here)
            return f"[{text}]({target}{fragment})"
        if repo_url is None:
            return text if text == f"`{path}`" else f"{text} (`{path}`)"
        return f"[{text}]({repo_url.rstrip('/')}/blob/main/{path}{fragment})"

    return ANCHOR.sub(relink, RELATIVE.sub(relocate, body))


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    """Replace each readme directive with the section it names."""
    where, repo_url = page.file.src_uri, config.get("repo_url")
    return DIRECTIVE.sub(
        lambda match: readme_section(match.group("title"), where, repo_url), markdown
    )
