"""The AsyncAPI 3.0 document of a service: valid by the official schema, and checked."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import jsonschema
import pytest
import referencing
import referencing.jsonschema

from messagebus import Envelope, Event, InvalidArgumentError, MessageBus
from messagebus.contracts import asyncapi_breaking_changes, asyncapi_document
from messagebus.transports.memory import InMemoryTransport
from messagebus.transports.sqs import SQSTransport
from tests import asyncapi_app, blog_app
from tests.asyncapi_specs import asyncapi_schema
from tests.conftest import Cli


@pytest.fixture(scope="session")
def asyncapi_validator() -> jsonschema.protocols.Validator:
    """A validator of the official AsyncAPI 3.0.0 JSON Schema (every definition in it)."""
    schema = asyncapi_schema("3.0.0")
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (uri, referencing.jsonschema.DRAFT7.create_resource(definition))
        for uri, definition in schema["definitions"].items()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, registry=registry)


def errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    return [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)
    ]


def orders(prefix: str = "shop-", *, fifo: bool = False) -> MessageBus:
    return asyncapi_app.build(SQSTransport(region="eu-west-1", prefix=prefix), fifo=fifo)


def blog() -> MessageBus:
    return blog_app.build(InMemoryTransport(), blog_app.Blog())


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


class TestValidity:
    """The official schema accepts the documents; it would refuse a broken one."""

    def test_the_blog_app(self, asyncapi_validator: jsonschema.protocols.Validator) -> None:
        """The blog service's document is valid AsyncAPI 3.0.0."""
        assert errors(asyncapi_validator, asyncapi_document(blog())) == []

    @pytest.mark.parametrize("fifo", [False, True])
    def test_a_service_on_sqs_with_routes(
        self, asyncapi_validator: jsonschema.protocols.Validator, fifo: bool
    ) -> None:
        """A service with queues and topics, on SQS, standard or FIFO, is valid too."""
        assert errors(asyncapi_validator, asyncapi_document(orders(fifo=fifo))) == []

    def test_the_schema_refuses_a_broken_document(
        self, asyncapi_validator: jsonschema.protocols.Validator
    ) -> None:
        """Without info, or with an operation of no action, the document is refused."""
        document = asyncapi_document(blog())
        del document["info"]
        next(iter(document["operations"].values()))["action"] = "publish"
        found = errors(asyncapi_validator, document)
        assert any("'info' is a required property" in error for error in found)
        assert len(found) >= 2

    def test_every_reference_resolves(self) -> None:
        """Every $ref outside the payloads points at something in the document."""
        document = asyncapi_document(orders())
        payloads = [m["payload"] for m in document["components"]["messages"].values()]
        skeleton = copy.deepcopy(document)
        for message in skeleton["components"]["messages"].values():
            del message["payload"]
        for reference in refs(skeleton):
            node: Any = document
            for part in reference.removeprefix("#/").split("/"):
                node = node[part]
            assert isinstance(node, dict), reference
        assert payloads


class TestContent:
    """Channels, operations and messages: what the bus knows, by the broker's names."""

    def test_the_blog_app(self) -> None:
        """The blog receives its command and its event on its queue, publishes the event."""
        document = asyncapi_document(blog(), version="2.1.0")
        assert document["info"] == {
            "title": "blog",
            "version": "2.1.0",
            "description": "Messages of service 'blog' (CloudEvents 1.0 source '/blog'), "
            "made by messagebus.",
        }
        assert {key: channel["address"] for key, channel in document["channels"].items()} == {
            "queue.blog": "blog",
            "topic.blogapp-post-published": "blogapp-post-published",
        }
        assert {key: op["action"] for key, op in document["operations"].items()} == {
            "receive.blogapp.post.publish.v1": "receive",
            "receive.blogapp.post.published.v1": "receive",
            "send.blogapp.post.published.v1": "send",
        }
        assert document["operations"]["send.blogapp.post.published.v1"]["channel"] == {
            "$ref": "#/channels/topic.blogapp-post-published"
        }

    def test_queues_and_topics_on_sqs(self) -> None:
        """Its queue, the routed queue and every topic appear with their SQS/SNS names."""
        document = asyncapi_document(orders(fifo=True), title="Orders")
        assert document["info"]["title"] == "Orders"
        addresses = {key: channel["address"] for key, channel in document["channels"].items()}
        assert addresses == {
            "queue.orders": "shop-orders.fifo",
            "queue.payments": "shop-payments.fifo",
            "topic.payments-card-charged": "shop-payments-card-charged.fifo",
            "topic.shop-order-placed": "shop-shop-order-placed.fifo",
        }
        operations = {
            key: (op["action"], op["channel"]["$ref"]) for key, op in document["operations"].items()
        }
        assert operations == {
            "receive.shop.order.place.v1": ("receive", "#/channels/queue.orders"),
            "receive.payments.card.charged.v1": ("receive", "#/channels/queue.orders"),
            "send.payments.card.charge.v1": ("send", "#/channels/queue.payments"),
            "send.shop.order.placed.v1": ("send", "#/channels/topic.shop-order-placed"),
            "send.payments.card.charged.v1": ("send", "#/channels/topic.payments-card-charged"),
        }
        assert sorted(document["components"]["messages"]) == [
            "payments.card.charge.v1",
            "payments.card.charged.v1",
            "shop.order.place.v1",
            "shop.order.placed.v1",
        ]

    def test_a_wrapped_transport_keeps_its_names(self) -> None:
        """A transport wrapper (tracing, say) shows the SQS names of the transport inside."""
        from messagebus.otel import TracedTransport

        inner = SQSTransport(region="eu-west-1", prefix="shop-")
        bus = asyncapi_app.build(TracedTransport(inner, metrics=False))
        addresses = {
            key: channel["address"] for key, channel in asyncapi_document(bus)["channels"].items()
        }
        assert addresses["queue.orders"] == "shop-orders"
        assert addresses["topic.shop-order-placed"] == "shop-shop-order-placed"

    def test_a_message(self) -> None:
        """A message: wire name, kind, summary, CloudEvents headers, the payload schema."""
        document = asyncapi_document(orders())
        message = document["components"]["messages"]["shop.order.place.v1"]
        assert message["name"] == "shop.order.place"
        assert message["summary"] == "Place an order for a customer."
        assert message["tags"] == [{"name": "command"}]
        assert message["x-messagebus"] == {
            "type": "shop.order.place",
            "version": 1,
            "kind": "command",
        }
        headers = message["headers"]
        assert headers["properties"]["type"] == {"const": "shop.order.place"}
        assert headers["required"] == ["specversion", "id", "source", "type", "time"]
        payload = message["payload"]
        assert payload["schemaFormat"] == "application/schema+json;version=draft-2020-12"
        schema = payload["schema"]
        assert schema["properties"]["order_id"] == {"type": "string", "format": "uuid"}
        assert schema["properties"]["lines"] == {"type": "array", "items": {"$ref": "#/$defs/Line"}}
        assert list(schema["$defs"]) == ["Line"]

    def test_payload_and_headers_describe_the_wire(self) -> None:
        """An encoded message's data fits its payload schema and its attributes its headers."""
        bus = orders()
        document = asyncapi_document(bus)
        message = document["components"]["messages"]["shop.order.place.v1"]
        envelope = Envelope(
            asyncapi_app.PlaceOrder(UUID(int=7), [asyncapi_app.Line("a-1", 2)]),
            causation_id="c-1",
            idempotency_key="k",
            headers={"traceparent": "00-abc"},
        )
        body = bus.codec.to_dict(envelope)
        data = body.pop("data")
        payload = jsonschema.Draft202012Validator(message["payload"]["schema"])
        assert list(payload.iter_errors(data)) == []
        assert list(payload.iter_errors({"order_id": 7, "lines": []})) != []
        attributes = jsonschema.Draft7Validator(message["headers"])
        assert list(attributes.iter_errors(body)) == []
        assert list(attributes.iter_errors({**body, "type": "shop.order.placed"})) != []
        assert list(attributes.iter_errors({**body, "Bad-Name": "x"})) != []


@attrs.frozen
class Renamed(Event, name="blogapp.post.published"):
    post_id: str
    title: str


class TestBreakingChanges:
    """--check's comparison: the schema export's rules on payloads, plus operations."""

    def test_no_change(self) -> None:
        """A document against itself, or against the service rebuilt, breaks nothing."""
        assert (
            asyncapi_breaking_changes(asyncapi_document(orders()), asyncapi_document(orders()))
            == []
        )

    def test_payload_rules_are_the_schema_export_rules(self) -> None:
        """A retyped field breaks, reported as `messagebus schema --check` reports it."""
        saved = asyncapi_document(blog())
        bus = MessageBus(service="blog", source="/blog")
        bus.declare(Renamed, blog_app.PublishPost)
        assert asyncapi_breaking_changes(saved, asyncapi_document(bus)) == [
            "blogapp.post.published v1: field 'post_id' changed type",
            "operation receive.blogapp.post.publish.v1: gone (the service no longer does it)",
            "operation receive.blogapp.post.published.v1: gone (the service no longer does it)",
        ]

    def test_a_removed_route_and_type(self) -> None:
        """Dropping a routed command removes its type and its send operation."""
        saved = asyncapi_document(orders())
        current = copy.deepcopy(saved)
        del current["operations"]["send.payments.card.charge.v1"]
        del current["components"]["messages"]["payments.card.charge.v1"]
        assert asyncapi_breaking_changes(saved, current) == [
            "payments.card.charge v1: the type is gone (removed or renamed)",
            "operation send.payments.card.charge.v1: gone (the service no longer does it)",
        ]

    def test_a_moved_channel(self) -> None:
        """Another prefix moves every channel: each operation says from where to where."""
        changes = asyncapi_breaking_changes(
            asyncapi_document(orders("shop-")), asyncapi_document(orders("prod-"))
        )
        assert len(changes) == 5
        assert (
            "operation receive.shop.order.place.v1: its channel moved from "
            "'shop-orders' to 'prod-orders'"
        ) in changes

    def test_new_operations_do_not_break(self) -> None:
        """A service that starts doing more breaks nobody."""
        bus = MessageBus(service="blog", source="/blog")
        assert asyncapi_breaking_changes(asyncapi_document(bus), asyncapi_document(blog())) == []

    @pytest.mark.parametrize(
        "document", [{}, {"asyncapi": "3.0.0"}, {"asyncapi": "2.6.0", "x-messagebus": {}}]
    )
    def test_refuses_other_documents(self, document: dict[str, Any]) -> None:
        """Only AsyncAPI 3.0.0 documents made here can be compared."""
        with pytest.raises(InvalidArgumentError, match=r"not an AsyncAPI 3\.0\.0 document"):
            asyncapi_breaking_changes(document, asyncapi_document(blog()))


class TestAsyncapiCommand:
    """`messagebus asyncapi`: print, write, check."""

    APP = "tests.asyncapi_app:bus"

    def test_print_write_and_check(self, cli: Cli, tmp_path: Path) -> None:
        """The document prints, writes to a file, and checks clean against itself."""
        status, out, _ = cli("asyncapi", "--app", self.APP, "--api-version", "3.1.4")
        assert status == 0
        printed = json.loads(out)
        assert printed["info"]["version"] == "3.1.4"
        assert printed["channels"]["queue.payments"]["address"] == "shop-payments"
        saved = tmp_path / "asyncapi.json"
        status, out, _ = cli("asyncapi", "--app", self.APP, "--output", str(saved))
        assert (status, out.strip()) == (0, f"wrote 5 operation(s) to {saved}")
        status, out, _ = cli("asyncapi", "--app", self.APP, "--check", str(saved))
        assert (status, out.strip()) == (0, f"no breaking changes against {saved}")

    def test_check_fails_on_a_break(self, cli: Cli, tmp_path: Path) -> None:
        """A saved document the app no longer meets exits 1, listing the breaks."""
        saved = tmp_path / "asyncapi.json"
        document = asyncapi_document(orders())
        document["operations"]["send.shop.order.shipped.v1"] = copy.deepcopy(
            document["operations"]["send.shop.order.placed.v1"]
        )
        saved.write_text(json.dumps(document))
        status, out, err = cli("asyncapi", "--app", self.APP, "--check", str(saved))
        assert status == 1
        assert out.strip() == (
            "breaking: operation send.shop.order.shipped.v1: gone (the service no longer does it)"
        )
        assert "1 breaking change(s)" in err

    def test_check_refuses_other_files(self, cli: Cli, tmp_path: Path) -> None:
        """A file that is not such a document is a one-line error."""
        saved = tmp_path / "other.json"
        saved.write_text(json.dumps({"asyncapi": "3.0.0"}))
        status, _, err = cli("asyncapi", "--app", self.APP, "--check", str(saved))
        assert status == 1
        assert "not an AsyncAPI 3.0.0 document made by messagebus" in err


@pytest.mark.anyio
async def test_the_document_of_a_running_bus_is_the_same() -> None:
    """Running the bus (its transport open) changes nothing in its document."""
    bus = blog()
    before = asyncapi_document(bus)
    async with bus:
        assert asyncapi_document(bus) == before
