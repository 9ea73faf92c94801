"""The transports' packages: a folder per family, each the one home of its names."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

import messagebus.transports
import messagebus.transports.memory
import messagebus.transports.sqs
from messagebus import ConfigurationError
from messagebus._errors import InvalidArgumentError
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from messagebus.transports.sqs._names import Names


def isort_style(name: str) -> tuple[int, str]:
    """RUF022's order: constants, then classes, then functions, each alphabetical."""
    return 0 if name.isupper() else 1 if name[0].isupper() else 2, name


class TestExports:
    """Each transport package lists what it exports, and exports what it lists."""

    @pytest.mark.parametrize(
        "module",
        [messagebus.transports, messagebus.transports.memory, messagebus.transports.sqs],
    )
    def test_all_is_sorted_and_resolvable(self, module: ModuleType) -> None:
        """__all__ is sorted, unique, and every name in it exists."""
        names = module.__all__
        assert names == sorted(names, key=isort_style)
        assert len(set(names)) == len(names)
        for name in names:
            assert hasattr(module, name), name

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
