"""The installed version, read from the distribution's metadata (pyproject.toml is its one source).

The distribution is named ``anyio-messagebus`` on PyPI (``messagebus`` there is an
unrelated project); the import package is ``messagebus``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["DISTRIBUTION", "__version__", "installed_version"]

DISTRIBUTION = "anyio-messagebus"


def installed_version() -> str:
    """Return the installed distribution's version; ``0+unknown`` when not installed.

    A source tree imported without installing it (``PYTHONPATH=.``) has no metadata.
    """
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


__version__ = installed_version()
