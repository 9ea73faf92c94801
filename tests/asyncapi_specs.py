"""The official AsyncAPI JSON Schemas, from the npm package ``@asyncapi/specs``.

Installed once with npm into ``~/.cache/messagebus-asyncapi/<version>`` (under
``XDG_CACHE_HOME`` when set) and reused. Without node and npm, or without the registry,
the tests that need the schemas are skipped on a workstation and fail when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

SPECS_VERSION = "6.11.1"
"""The pinned ``@asyncapi/specs`` release (it carries the 3.0.0 schema)."""


def _cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "messagebus-asyncapi" / SPECS_VERSION


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}\nCI must validate the AsyncAPI document.", pytrace=False)
    pytest.skip(reason)


def asyncapi_schema(version: str = "3.0.0") -> dict[str, Any]:
    """Return the official JSON Schema of AsyncAPI ``version``, installing it if needed."""
    home = _cache()
    schema = home / "node_modules" / "@asyncapi" / "specs" / "schemas" / f"{version}.json"
    if not schema.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            _unavailable("node and npm are needed to install @asyncapi/specs")
        home.parent.mkdir(parents=True, exist_ok=True)
        # Install beside, then move in whole: two runs at once never see half a package.
        with tempfile.TemporaryDirectory(dir=home.parent) as scratch:
            done = subprocess.run(
                [
                    str(npm),
                    "install",
                    "--prefix",
                    scratch,
                    "--no-audit",
                    "--no-fund",
                    f"@asyncapi/specs@{SPECS_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                _unavailable(f"npm install @asyncapi/specs failed: {done.stderr[-2000:]}")
            if not schema.exists():
                os.replace(scratch, home)
                Path(scratch).mkdir()  # for TemporaryDirectory's clean-up
    document: dict[str, Any] = json.loads(schema.read_text())
    return document
