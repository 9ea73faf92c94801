"""Registration that mypy checks: mypy itself runs on small snippet modules.

Good snippets must type-check clean; in a bad snippet each line marked ``# E: code:
text`` must get exactly that error (its code, and a message containing ``text``) and no
other line may get one. One mypy run (``mypy.api.run``, in process) checks every
snippet, with the project's own mypy settings ([tool.mypy] in pyproject.toml, less its
file list) and its cache in ``tmp_path``; the output is split per snippet. Only mypy is
needed, not pyright.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent

MESSAGES = """
from __future__ import annotations

import attrs

from messagebus import Command, Event


@attrs.frozen
class Receipt:
    amount: int


@attrs.frozen
class SignedReceipt(Receipt):
    signature: str


@attrs.frozen
class ChargeCard(Command[Receipt], name="typing.charge-card"):
    amount: int


@attrs.frozen
class ChargeCardAbroad(ChargeCard, name="typing.charge-card-abroad"):
    country: str


@attrs.frozen
class Refund(Command[int], name="typing.refund"):
    amount: int


@attrs.frozen
class IndexPost(Command[None], name="typing.index-post"):
    post_id: int


@attrs.frozen
class PostPublished(Event, name="typing.post-published"):
    post_id: int


@attrs.frozen
class PostEdited(Event, name="typing.post-edited"):
    post_id: int
"""

HEADER = """
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, assert_type

from messagebus import Command, Context, Event, Message, MessageBus
from messagebus.testing import BusHarness, replace_handler, replace_subscriber
from snippet_messages import (
    ChargeCard, ChargeCardAbroad, IndexPost, PostEdited, PostPublished, Receipt, Refund,
    SignedReceipt,
)

bus = MessageBus()
"""

# Every form the bus accepts at run time (messagebus._handlers.inspect_handler) passes.
GOOD: dict[str, str] = {
    "good_handler_forms": """
@bus.handler(ChargeCard)
async def plain(command: ChargeCard) -> Receipt:
    return Receipt(command.amount)


@bus.handler(Refund)
async def with_context(command: Refund, ctx: Context[Refund]) -> int:
    ctx.publish(PostEdited(1))
    return command.amount


@bus.handler(IndexPost)
def sync(command: IndexPost) -> None:
    pass


@bus.handler(ChargeCardAbroad)
def sync_with_context(command: ChargeCardAbroad, ctx: Context[Message]) -> SignedReceipt:
    return SignedReceipt(command.amount, ctx.envelope.message_id)


async def main() -> None:
    # The decorator returns the handler, still callable as written (tests call it).
    assert_type(await plain(ChargeCard(1)), Receipt)
    assert_type(sync(IndexPost(1)), None)
    # send() is typed by Command[R].
    assert_type(await bus.send(ChargeCard(1)), Receipt)
    assert_type(await bus.send(Refund(1)), int)
    assert_type(await bus.send(IndexPost(1)), None)
""",
    "good_handler_variance": """
# A handler may take a base class of its command (or Any), return a subtype of the
# result, return an awaitable from a plain def, and have extra defaulted parameters.
@bus.handler(ChargeCardAbroad)
async def base_class(command: ChargeCard) -> SignedReceipt:
    return SignedReceipt(command.amount, "s")


@bus.handler(ChargeCard)
def awaitable_from_def(
    command: ChargeCard, ctx: Context[Any], retries: int = 3
) -> Awaitable[Receipt]:
    async def later() -> Receipt:
        return Receipt(retries)

    return later()


@bus.handler(Refund)
async def variadic(*args: Any) -> int:
    return 0
""",
    "good_handler_calls": """
class Charger:
    async def __call__(self, command: ChargeCard) -> Receipt:
        return Receipt(command.amount)


class Refunds:
    def refund(self, command: Refund, ctx: Context[Refund]) -> int:
        return command.amount


async def index(command: IndexPost) -> None:
    pass


bus.handler(ChargeCard, Charger(), name="charger", idempotent=True)
bus.handler(Refund, Refunds().refund)
bus.handler(IndexPost, index, middleware=[])
bus.handler(ChargeCardAbroad, lambda command: SignedReceipt(command.amount, "s"))


# A command type known only as Command[Any] takes a handler with any result.
def register_any(command_type: type[Command[Any]]) -> None:
    bus.handler(command_type, lambda command: "anything")



async def fake(command: ChargeCard) -> Receipt:
    return Receipt(0)


with replace_handler(bus, ChargeCard, fake):
    pass
bus.replace_handler(Refund, lambda command: 2)()


def in_a_harness(harness: BusHarness) -> None:
    with harness.replace_handler(ChargeCard, fake):
        pass
""",
    "good_subscribers": """
@bus.subscriber(PostPublished)
async def notify(event: PostPublished) -> None:
    pass


@bus.subscriber(PostPublished, name="audit")
def audit(event: Event, ctx: Context[Event]) -> str:
    return "subscribers may return anything; it is ignored"


@bus.subscriber(PostEdited)
async def with_context(event: PostEdited, ctx: Context[PostEdited]) -> None:
    ctx.publish(PostPublished(event.post_id))


def reindex(event: Message) -> None:
    pass


bus.subscriber(PostEdited, reindex)
bus.subscriber(PostPublished, lambda event: print(event.post_id), name="print")


async def main() -> None:
    assert_type(await notify(PostPublished(1)), None)
    # The decorator types the function as registered: (PostPublished, ctx) -> str.
    assert_type(audit, Callable[[PostPublished, Context[PostPublished]], str])
    await bus.publish(PostPublished(1))
    with replace_subscriber(bus, PostPublished, "audit", reindex):
        pass
    bus.replace_handler(PostEdited, reindex, name="reindex")()
""",
}

BAD: dict[str, str] = {
    "bad_handler_argument": """
@bus.handler(ChargeCard)  # E: arg-type: "Callable[[Refund], Coroutine[Any, Any, Receipt]]"
async def wrong_command(command: Refund) -> Receipt:
    return Receipt(1)


@bus.handler(ChargeCard)  # E: arg-type: "Callable[[ChargeCardAbroad], Receipt]"
def too_narrow(command: ChargeCardAbroad) -> Receipt:
    return Receipt(1)


@bus.handler(ChargeCard)  # E: arg-type: "Callable[[ChargeCard, Context[Refund]], Coroutine[
async def wrong_context(command: ChargeCard, ctx: Context[Refund]) -> Receipt:
    return Receipt(1)


@bus.handler(ChargeCard)  # E: arg-type: [ChargeCard, Context[ChargeCard], int]
async def third_parameter(command: ChargeCard, ctx: Context[ChargeCard], extra: int) -> Receipt:
    return Receipt(1)
""",
    "bad_handler_result": """
@bus.handler(ChargeCard)  # E: arg-type: expected "Callable[[ChargeCard], Awaitable[Receipt]]"
async def wrong_result(command: ChargeCard) -> int:
    return 1


@bus.handler(ChargeCard)  # E: arg-type: "Callable[[ChargeCard], str]"
def wrong_sync_result(command: ChargeCard) -> str:
    return ""


@bus.handler(IndexPost)  # E: arg-type: Coroutine[Any, Any, int]]
async def result_for_none(command: IndexPost, ctx: Context[IndexPost]) -> int:
    return 1
""",
    "bad_handler_other_command": """
# A handler written for Refund (a Command[int]) registered for ChargeCard (Command[Receipt]).
async def refund(command: Refund) -> int:
    return command.amount


bus.handler(ChargeCard, refund)  # E: call-overload: No overload variant of "handler"


async def main() -> None:
    amount: int = await bus.send(ChargeCard(1))  # E: arg-type: expected "Command[int]"
""",
    "bad_subscribers": """
@bus.subscriber(PostPublished)  # E: arg-type: "Callable[[PostEdited], Coroutine[Any, Any, None]]"
async def wrong_event(event: PostEdited) -> None:
    pass


@bus.subscriber(PostPublished)  # E: arg-type: [PostPublished, Context[PostEdited]]
def wrong_context(event: PostPublished, ctx: Context[PostEdited]) -> None:
    pass


async def edited(event: PostEdited) -> None:
    pass


bus.subscriber(PostPublished, edited)  # E: arg-type: Argument 2 to "subscriber" of "MessageBus"
""",
    "bad_kinds": """
bus.subscriber(ChargeCard, lambda command: None)  # E: type-var: cannot be "ChargeCard"
bus.handler(PostPublished, lambda event: None)  # E: call-overload: No overload variant of "handler"


@bus.handler(PostPublished)  # E: call-overload: "handler"  # E: untyped-decorator: Untyped
async def not_a_command(event: PostPublished) -> None:
    pass


async def main() -> None:
    await bus.send(PostPublished(1))  # E: arg-type: Argument 1 to "send" of "Dispatcher"
""",
    "bad_replacements": """
async def wrong(command: ChargeCard) -> int:
    return 1


def edited(event: PostEdited) -> None:
    pass


with replace_handler(bus, ChargeCard, wrong):  # E: arg-type: Argument 3 to "replace_handler"
    pass
with replace_subscriber(bus, PostPublished, "notify", edited):  # E: arg-type: Argument 4
    pass


def in_a_harness(harness: BusHarness) -> None:
    with harness.replace_handler(ChargeCard, wrong):  # E: arg-type: Argument 2 to "replace_handler"
        pass
    with harness.replace_subscriber(PostPublished, "notify", edited):  # E: arg-type: Argument 3
        pass
""",
}

_EXPECTED = re.compile(r"#\s*E:\s*(?P<code>[a-z-]+):\s*(?P<text>.*?)\s*(?=#\s*E:|$)")
_REPORTED = re.compile(
    r"^(?P<file>[^:]+\.py):(?P<line>\d+): error: (?P<message>.*?)(?:  \[(?P<code>[a-z-]+)\])?$"
)


def _mypy_config(tmp_path: Path) -> Path:
    """The project's global [tool.mypy] settings, without its file list, as an ini file.

    Per-module overrides (third-party stubs) concern no snippet, so they are left out.
    """
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    lines = ["[mypy]"]
    for key, value in settings.items():
        if key not in {"files", "overrides"}:
            lines.append(f"{key} = {str(value) if isinstance(value, bool) else value}")
    config = tmp_path / "mypy.ini"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, str, str]]]:
    """Run mypy once over every snippet; return each snippet's (line, code, message)s."""
    tmp_path = tmp_path_factory.mktemp("typing")
    snippets = tmp_path / "snippets"
    snippets.mkdir()
    (snippets / "snippet_messages.py").write_text(MESSAGES)
    files = [str(snippets / "snippet_messages.py")]
    for name, body in {**GOOD, **BAD}.items():
        path = snippets / f"snippet_{name}.py"
        path.write_text(HEADER + body)
        files.append(str(path))
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(_mypy_config(tmp_path)),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            "--show-error-codes",
            *files,
        ]
    )
    assert stderr == "", stderr
    assert status in (0, 1), stdout
    found: dict[str, list[tuple[int, str, str]]] = {name: [] for name in {**GOOD, **BAD}}
    found["messages"] = []
    for line in stdout.splitlines():
        match = _REPORTED.match(line)
        if match is None:
            continue  # notes
        snippet = Path(match["file"]).stem.removeprefix("snippet_")
        found[snippet].append((int(match["line"]), match["code"] or "", match["message"]))
    return found


def _expected(body: str) -> list[tuple[int, str, str]]:
    """The (line, code, text) of each ``# E: code: text`` marker (a line may have several)."""
    offset = HEADER.count("\n")
    return [
        (offset + number, match["code"], match["text"])
        for number, line in enumerate(body.splitlines(), start=1)
        for match in _EXPECTED.finditer(line)
    ]


class TestRegistrationTyping:
    """mypy accepts every handler form the bus runs, and rejects the wrong ones."""

    def test_the_shared_messages_check_clean(
        self, reports: dict[str, list[tuple[int, str, str]]]
    ) -> None:
        """The message module the snippets import has no error of its own."""
        assert reports["messages"] == []

    @pytest.mark.parametrize("name", sorted(GOOD))
    def test_good_registrations_pass(
        self, reports: dict[str, list[tuple[int, str, str]]], name: str
    ) -> None:
        """Each accepted form type-checks, and send() is typed by the command's result."""
        assert reports[name] == []

    @pytest.mark.parametrize("name", sorted(BAD))
    def test_bad_registrations_fail_where_marked(
        self, reports: dict[str, list[tuple[int, str, str]]], name: str
    ) -> None:
        """Every marked line gets its error (code and message), and no other line does."""
        expected = _expected(BAD[name])
        assert expected, "a bad snippet must mark at least one line"
        got = reports[name]
        assert sorted((line, code) for line, code, _ in got) == sorted(
            (line, code) for line, code, _ in expected
        ), got
        for line, code, text in expected:
            messages = [message for at, of, message in got if (at, of) == (line, code)]
            assert any(text in message for message in messages), (line, code, text, messages)

    def test_mypy_is_the_only_checker_needed(self) -> None:
        """The package's dev extra brings mypy; pyright is neither required nor imported."""
        dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]["dev"]
        assert any(requirement.startswith("mypy") for requirement in dev)
        assert not any("pyright" in requirement for requirement in dev)
        assert "pyright" not in sys.modules
