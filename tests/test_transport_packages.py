"""The transports' packages: a folder per family, each the one home of its names."""

from __future__ import annotations

import subprocess
import sys

import pytest

import messagebus.transports
import messagebus.transports.memory
import messagebus.transports.sqs
from messagebus import ConfigurationError
from messagebus._errors import InvalidArgumentError
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from messagebus.transports.sqs._names import Names


class TestExports:
    """Each family is a folder, the one home of its names (tests/test_public_api.py
    checks every package's __all__)."""

    def test_each_family_is_the_one_home_of_its_names(self) -> None:
        """The families' classes are exported by their folder, not again by the package."""
        family = {*messagebus.transports.memory.__all__, *messagebus.transports.sqs.__all__}
        assert family.isdisjoint(messagebus.transports.__all__)
        assert not hasattr(messagebus.transports, "InMemoryTransport")


class TestLazySQS:
    """The SQS family needs an extra, so the transports package does not import it."""

    def test_importing_transports_leaves_aiobotocore_out(self) -> None:
        """A fresh interpreter imports messagebus.transports without aiobotocore."""
        code = (
            "import sys, messagebus, messagebus.transports;"
            "assert 'aiobotocore' not in sys.modules, 'aiobotocore imported';"
            "assert 'messagebus.transports.sqs' not in sys.modules, 'sqs imported'"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


class TestArgumentErrors:
    """The transports refuse bad arguments with the tree's error, still a ValueError."""

    def test_memory_and_sqs_refuse_with_invalid_argument_error(self) -> None:
        """A broker and a clock at once, a bad SQS prefix: InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError, match="not both") as memory:
            InMemoryTransport(MemoryBroker(), clock=lambda: 0.0)
        with pytest.raises(InvalidArgumentError, match="prefix") as sqs:
            Names("no spaces")
        for caught in (memory, sqs):
            assert isinstance(caught.value, ConfigurationError)
            assert isinstance(caught.value, ValueError)
