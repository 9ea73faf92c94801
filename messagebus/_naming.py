"""The naming lint: events are named as facts, commands as intentions.

An event already happened, so its names are in the past tense: ``PostPublished``,
``blog.post.published``. A command asks for something to happen, so its names are
imperatives: ``PublishPost``, ``blog.post.publish``. The heuristic, on the class name
split into words (``PostPublished`` -> ``Post``, ``Published``) and on the wire name's
last segment (``published``):

- a word is *past tense* if it ends in "ed" or is one of the irregular past
  participles in :data:`IRREGULAR_PAST` (``Sent``, ``Paid``, ``Written``, ...);
- an event's class name must end in a past-tense word, and its wire name's last segment
  must be one;
- a command's class name must not contain a past-tense word (``PostPublished`` reads as
  an event), and its wire name's last segment must not be one; words whose past form
  is also their base form (:data:`AMBIGUOUS`: ``set``, ``put``, ``run``...) do not count
  against a command.

It cannot tell a verb from a noun, so it misses some mistakes (``PostEvent`` as an
event) and flags some fine names (a command ``SeedFeed`` ends in "ed"): put those in the
allow-list, by class name or wire name.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

import attrs

from messagebus._messages import Message, message_kind

__all__ = ["AMBIGUOUS", "IRREGULAR_PAST", "NamingFinding", "is_past_tense", "lint_names"]

IRREGULAR_PAST = frozenset(
    # One word list, easier to read and extend than a literal of 150 strings.
    """began begun bent bet bid bound bought bred brought built burnt burst caught chosen
    cut dealt done drawn drew driven drove dug eaten fallen fed felt fought found fled
    flown forbidden forgotten forgiven frozen gave given gone got gotten grown held hid
    hidden hit hung hurt kept knew known laid led left lent let lit lost made meant met
    paid put quit ran read rebuilt redone rung risen run said sat saw seen sent set
    sewn shaken shed shot shown shut slept sold sought spent split spoken spread spun
    stolen struck stood stuck sung sunk swept sworn swum taken taught thought thrown
    told torn undone understood upheld withdrawn won worn wound woven written wrote""".split()  # noqa: SIM905
)
"""Past-tense forms that do not end in "ed"."""

AMBIGUOUS = frozenset(
    "bet bid burst cut hit hurt let put quit read run set shed shut split spread".split()  # noqa: SIM905
)
"""Past forms that are also the base form (``SetPrice``, ``PriceSet``): they pass as past
tense in an event's name and do not count against a command's."""

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z]+")


@attrs.frozen
class NamingFinding:
    """One name that reads as the wrong kind of message, with the reason."""

    message_type: type[Message]
    which: str  # "class name" or "wire name"
    name: str
    problem: str

    def __str__(self) -> str:
        return f"{self.message_type.__qualname__}: {self.which} {self.name!r} {self.problem}"


def is_past_tense(word: str) -> bool:
    """Tell whether ``word`` reads as past tense (ends in "ed", or is irregular)."""
    word = word.lower()
    return (word.endswith("ed") and len(word) > 3) or word in IRREGULAR_PAST


def _clearly_past(word: str) -> bool:
    return is_past_tense(word) and word.lower() not in AMBIGUOUS


def lint_names(
    message_types: Iterable[type[Message]], *, allow: Collection[str] = ()
) -> list[NamingFinding]:
    """Return the naming findings for ``message_types``; names in ``allow`` pass."""
    findings: list[NamingFinding] = []
    for message_type in message_types:
        class_name, wire = message_type.__name__, message_type.__message_name__
        if class_name in allow or wire in allow:
            continue
        words = _WORD.findall(class_name) or [class_name]
        last_segment = wire.rsplit(".", 1)[-1].replace("-", "_").split("_")[-1]
        check = _event_problems if message_kind(message_type) == "event" else _command_problems
        findings.extend(
            NamingFinding(message_type, which, name, problem)
            for which, name, problem in check(class_name, words, wire, last_segment)
        )
    return findings


def _event_problems(
    class_name: str, words: list[str], wire: str, last_segment: str
) -> list[tuple[str, str, str]]:
    problems = []
    if not is_past_tense(words[-1]):
        problems.append(
            (
                "class name",
                class_name,
                "should end in a past-tense verb: an event is a fact (for example PostPublished)",
            )
        )
    if not is_past_tense(last_segment):
        problems.append(
            ("wire name", wire, "should end in a past-tense verb (for example blog.post.published)")
        )
    return problems


def _command_problems(
    class_name: str, words: list[str], wire: str, last_segment: str
) -> list[tuple[str, str, str]]:
    problems = []
    past = [word for word in words if _clearly_past(word)]
    if past:
        problems.append(
            (
                "class name",
                class_name,
                f"reads as an event ({past[0]!r} is past tense); a command is an imperative "
                "(for example PublishPost)",
            )
        )
    if _clearly_past(last_segment):
        problems.append(
            (
                "wire name",
                wire,
                "ends in a past-tense verb, as an event would; a command's wire name ends in "
                "its verb (for example blog.post.publish)",
            )
        )
    return problems
