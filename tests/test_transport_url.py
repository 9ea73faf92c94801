"""Transports named by URL: memory://, memory://NAME and sqs://... (parsed, then built)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from messagebus import Command, ConfigurationError, InvalidURLError, MessageBus
from messagebus.extension import Transport
from messagebus.transports._url import (
    SQSSettings,
    fell_back,
    parse_sqs_url,
    times_read,
    transport_from_env,
    transport_from_url,
)
from messagebus.transports.memory import InMemoryTransport


@attrs.frozen
class Note(Command[None], name="test.url.note"):
    text: str


class FakeSQS(InMemoryTransport):
    """Stands in for SQSTransport: records the settings it was made from."""

    def __init__(self, settings: SQSSettings) -> None:
        super().__init__()
        self.settings = settings


def settings_of(url: str) -> SQSSettings:
    transport = transport_from_url(url, sqs=FakeSQS)
    assert isinstance(transport, FakeSQS)
    return transport.settings


@pytest.fixture(autouse=True)
def no_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


class TestMemory:
    """memory:// is a private broker; memory://NAME shares one per name in the process."""

    def test_plain_memory_is_private(self) -> None:
        """Each memory:// transport has its own broker."""
        first, second = transport_from_url("memory://"), transport_from_url("memory://")
        assert isinstance(first, InMemoryTransport)
        assert isinstance(second, InMemoryTransport)
        assert first.broker is not second.broker

    def test_named_memory_is_shared(self) -> None:
        """The same name gives transports on one broker; another name, another broker."""
        first = transport_from_url("memory://test-url.shared")
        second = transport_from_url("memory://test-url.shared")
        other = transport_from_url("memory://test-url.other")
        assert isinstance(first, InMemoryTransport)
        assert isinstance(second, InMemoryTransport)
        assert isinstance(other, InMemoryTransport)
        assert first is not second
        assert first.broker is second.broker
        assert other.broker is not first.broker

    @pytest.mark.anyio
    async def test_two_buses_on_one_name_talk(self) -> None:
        """A command enqueued by one bus arrives at the other's queue."""
        sender = MessageBus(
            transport=transport_from_url("memory://test-url.talk"),
            service="web",
            routes={Note: "notes"},
        )
        receiver = MessageBus(
            transport=transport_from_url("memory://test-url.talk"), service="notes"
        )
        receiver.handler(Note, lambda note: None)
        async with receiver, sender:
            await receiver.provision()
            await sender.enqueue(Note("hello"))
            assert receiver.transport is not None
            (delivery,) = await receiver.transport.receive("notes", max_messages=1, wait=0)
            assert b"hello" in delivery.body
            await delivery.ack()

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("memory://x/y", "take nothing else"),
            ("memory://?a=1", "take nothing else"),
            ("memory://a%20b", "a broker name is letters"),
        ],
    )
    def test_bad_memory_urls(self, url: str, message: str) -> None:
        """Paths, queries and odd names are refused."""
        with pytest.raises(ConfigurationError, match=message):
            transport_from_url(url)


class TestSQSParsing:
    """sqs:// maps onto the SQS transport's constructor arguments."""

    def test_region_as_host(self) -> None:
        """sqs://REGION is the region; nothing else is set."""
        assert settings_of("sqs://eu-west-1") == SQSSettings(region="eu-west-1")

    def test_every_parameter(self) -> None:
        """Each query parameter lands in its argument, typed."""
        settings = settings_of(
            "sqs://?region=us-east-1&endpoint_url=http://localhost:4566&prefix=test-"
            "&profile=dev&max_attempts=5&connect_timeout=2.5&max_pool_connections=8"
            "&ack_window=0.01&topic_max_bytes=262144"
        )
        assert settings == SQSSettings(
            region="us-east-1",
            endpoint_url="http://localhost:4566",
            prefix="test-",
            profile="dev",
            options={
                "max_attempts": 5,
                "connect_timeout": 2.5,
                "max_pool_connections": 8,
                "ack_window": 0.01,
                "topic_max_bytes": 262_144,
            },
        )

    def test_region_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without one in the URL, AWS_REGION, then AWS_DEFAULT_REGION."""
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
        assert settings_of("sqs://").region == "eu-central-1"
        monkeypatch.setenv("AWS_REGION", "ap-south-1")
        assert settings_of("sqs://").region == "ap-south-1"

    def test_a_profile_may_supply_the_region(self) -> None:
        """With a profile and no region, the region is left to the profile."""
        assert parse_sqs_url("sqs://?profile=dev") == SQSSettings(region=None, profile="dev")

    @pytest.mark.parametrize(
        "endpoint",
        [
            "http://localhost:4566",
            "http://127.0.0.1:4566",
            "http://[::1]:4566",
            "https://sqs.eu-west-1.amazonaws.com",
            "https://localstack.internal:4566",
        ],
    )
    def test_safe_endpoints(self, endpoint: str) -> None:
        """https anywhere, plain http to this machine."""
        assert settings_of(f"sqs://eu-west-1?endpoint_url={endpoint}").endpoint_url == endpoint

    def test_plain_http_elsewhere_only_when_allowed(self) -> None:
        """http to another host is refused unless allow_http=true says it is meant."""
        url = "sqs://eu-west-1?endpoint_url=http://localstack:4566"
        with pytest.raises(ConfigurationError, match="in clear; use https, or allow_http=true"):
            transport_from_url(url, sqs=FakeSQS)
        assert settings_of(f"{url}&allow_http=true").endpoint_url == "http://localstack:4566"

    @pytest.mark.parametrize(
        ("url", "part", "message"),
        [
            ("sqs://", "host", "no region: use sqs://REGION"),
            ("sqs://eu-west-1?region=us-east-1", "host", "two regions"),
            (
                "sqs://eu-west-1?colour=blue&zone=a",
                "parameter colour, zone",
                "unknown parameter(s) colour, zone; known:",
            ),
            ("sqs://eu-west-1?prefix=a&prefix=b", "parameter prefix", "given twice"),
            ("sqs://eu-west-1?prefix", "query", "not name=value"),
            ("sqs://eu-west-1/queues", "path", "sqs://[REGION][?name=value&...] has no path"),
            (
                "sqs://eu-west-1?max_attempts=many",
                "parameter max_attempts",
                "must be an integer, not 'many'",
            ),
            ("sqs://eu-west-1?ack_window=-1", "parameter ack_window", "must be a number >= 0"),
            ("sqs://eu-west-1?allow_http=maybe", "parameter allow_http", "must be true or false"),
            (
                "sqs://eu-west-1?endpoint_url=ftp://h",
                "parameter endpoint_url",
                "must be http(s)://HOST",
            ),
            (
                "sqs://eu-west-1?endpoint_url=http://[::1",
                "parameter endpoint_url",
                "must be http(s)://HOST",
            ),
        ],
    )
    def test_bad_sqs_urls(self, url: str, part: str, message: str) -> None:
        """Each mistake is an InvalidURLError naming the part that is wrong, and why."""
        with pytest.raises(InvalidURLError) as raised:
            transport_from_url(url, sqs=FakeSQS)
        assert raised.value.part == part
        assert message in raised.value.reason
        assert f": {part}: {message}" in str(raised.value)

    def test_credentials_are_refused_and_not_echoed(self) -> None:
        """A key and secret in the URL are refused; the message does not repeat the secret."""
        with pytest.raises(ConfigurationError, match="credentials do not go in the URL") as raised:
            transport_from_url("sqs://AKIA:s3cr3t@eu-west-1?prefix=x", sqs=FakeSQS)
        assert "s3cr3t" not in str(raised.value)
        assert "AKIA" not in str(raised.value)

    def test_parse_refuses_other_schemes(self) -> None:
        """parse_sqs_url reads sqs:// URLs only."""
        with pytest.raises(ConfigurationError, match="not an sqs:// URL"):
            parse_sqs_url("memory://")


class TestSQSBuilding:
    """Without an injected factory, sqs:// builds the real SQS transport, lazily."""

    def test_missing_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without aiobotocore the error says what to install."""
        monkeypatch.setitem(sys.modules, "aiobotocore.session", None)
        with pytest.raises(ConfigurationError, match=r"pip install 'anyio-messagebus\[sqs\]'"):
            transport_from_url("sqs://eu-west-1")

    def test_builds_the_sqs_transport(self) -> None:
        """With the extra installed, the URL makes an SQSTransport (nothing connects yet)."""
        sqs: Any = pytest.importorskip("messagebus.transports.sqs")
        transport = transport_from_url(
            "sqs://eu-west-1?endpoint_url=http://localhost:4566&prefix=t-&max_attempts=2"
        )
        assert isinstance(transport, sqs.SQSTransport)

    def test_profiles(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A profile gives the region; a missing or region-less profile is refused now."""
        sqs: Any = pytest.importorskip("messagebus.transports.sqs")
        config = tmp_path / "aws-config"
        config.write_text("[profile dev]\nregion = eu-north-1\n\n[profile bare]\noutput = json\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        transport = transport_from_url("sqs://?profile=dev")
        assert isinstance(transport, sqs.SQSTransport)
        with pytest.raises(ConfigurationError, match="could not be found"):
            transport_from_url("sqs://eu-west-1?profile=nosuch")
        with pytest.raises(ConfigurationError, match="profile 'bare' has no region"):
            transport_from_url("sqs://?profile=bare")


class TestUnknownUrls:
    """Anything that is not a transport URL says what would be."""

    @pytest.mark.parametrize(
        ("url", "part", "message"),
        [
            ("redis://localhost", "scheme", "unknown transport 'redis'; use memory://"),
            ("memory", "scheme", "not a URL; use memory://"),
            ("memory:jobs", "scheme", "not a URL"),
            ("", "scheme", "not a URL"),
            ("sqs://[::1", "host", "Invalid IPv6 URL"),
            ("memory://jobs/x", "path", "take nothing else"),
            ("memory://a b", "host", "a broker name is letters"),
        ],
    )
    def test_unknown(self, url: str, part: str, message: str) -> None:
        """An InvalidURLError naming the part and the choices."""
        with pytest.raises(InvalidURLError) as raised:
            transport_from_url(url)
        assert raised.value.part == part
        assert message in str(raised.value)


class TestFromEnv:
    """transport_from_env reads MESSAGEBUS_TRANSPORT (or another variable)."""

    def test_default_when_unset_or_empty(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Unset or empty: the default URL."""
        monkeypatch.delenv("MESSAGEBUS_TRANSPORT", raising=False)
        assert isinstance(transport_from_env(), InMemoryTransport)
        monkeypatch.setenv("MESSAGEBUS_TRANSPORT", "")
        assert isinstance(transport_from_env(), InMemoryTransport)

    def test_reads_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The variable's URL wins over the default; the read is counted."""
        monkeypatch.setenv("APP_TRANSPORT", "sqs://eu-west-1?prefix=p-")
        before = times_read("APP_TRANSPORT")
        transport: Transport = transport_from_env(variable="APP_TRANSPORT", sqs=FakeSQS)
        assert isinstance(transport, FakeSQS)
        assert transport.settings.prefix == "p-"
        assert times_read("APP_TRANSPORT") == before + 1

    def test_errors_name_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad URL in the variable says where it came from."""
        monkeypatch.setenv("MESSAGEBUS_TRANSPORT", "kafka://broker")
        with pytest.raises(
            InvalidURLError, match=r"^MESSAGEBUS_TRANSPORT: 'kafka://broker': scheme: "
        ) as raised:
            transport_from_env()
        assert (raised.value.variable, raised.value.part) == ("MESSAGEBUS_TRANSPORT", "scheme")

    def test_a_missing_extra_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Not a URL mistake, still said with the variable it came from."""
        monkeypatch.setitem(sys.modules, "aiobotocore.session", None)
        monkeypatch.setenv("MESSAGEBUS_TRANSPORT", "sqs://eu-west-1")
        with pytest.raises(ConfigurationError, match=r"^MESSAGEBUS_TRANSPORT: sqs:// needs"):
            transport_from_env()

    def test_only_a_default_transport_fell_back(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """fell_back: the default was used because nobody set the variable."""
        monkeypatch.delenv("MESSAGEBUS_TRANSPORT", raising=False)
        assert fell_back(transport_from_env())
        monkeypatch.setenv("MESSAGEBUS_TRANSPORT", "memory://")
        assert not fell_back(transport_from_env())
        assert not fell_back(transport_from_url("memory://"))
