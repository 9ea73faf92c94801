"""Peer message-bus adapters for the dispatch throughput benchmark.

Each module exposes ``NAME``, ``SYNC``, ``available()`` and
``build(scenario, n)``; peer packages are imported lazily inside
``available()`` / ``build()``, so importing this package never requires them
(they live in the optional ``bench`` extra).
"""

from __future__ import annotations

from types import ModuleType

from . import blinker, cosmic, lato, pymessagebus, python_cqrs

PEERS: list[ModuleType] = [lato, python_cqrs, pymessagebus, blinker, cosmic]

__all__ = ["PEERS"]
