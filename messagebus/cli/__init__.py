"""The ``messagebus`` command (see :mod:`messagebus.cli._main`); ``main`` is its entry point."""

from messagebus.cli._main import cli, main

__all__ = ["cli", "main"]
