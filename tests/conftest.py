"""Every async test runs on asyncio and on trio, through anyio's pytest plugin."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.databases"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
