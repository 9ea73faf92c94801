"""What an application's conftest.py imports for the harness fixture example."""

import pytest

from messagebus.demo import build_bus
from messagebus.transports.memory import InMemoryTransport

__all__ = ["InMemoryTransport", "build_bus", "pytest"]
