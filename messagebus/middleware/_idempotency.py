"""Idempotency: a handler runs at most once per key, duplicates get the stored result."""

from __future__ import annotations

import hashlib
import json
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import anyio
import attrs
import cattrs
import msgspec
from cattrs.preconf.json import make_converter

from messagebus import InboxConfigurationError
from messagebus._clock import TimeSource, monotonic_time, sleep_of
from messagebus._deadline import capped_lease
from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, DuplicateInProgressError, IdempotencyKeyReused
from messagebus._handlers import HandlerInfo
from messagebus._log import get_logger
from messagebus._messages import Command, Message
from messagebus._middleware import CallNext, Middleware
from messagebus._sql import database_of
from messagebus._unit_of_work import UnitOfWork, current_unit_of_work
from messagebus.extension import IdempotencyStore, InboxStore
from messagebus.idempotency import (
    Claimed,
    ClaimOutcome,
    Completed,
    InMemoryIdempotencyStore,
    InProgress,
    Mismatch,
)
from messagebus.idempotency._store import HASHED

__all__ = ["IdempotencyMiddleware", "default_key"]


_FINGERPRINT = HASHED
"""The prefix of fingerprints hashed from msgspec's deterministic JSON (see fingerprint_of)."""

_ENCODER = msgspec.json.Encoder(order="deterministic", decimal_format="string")

try:
    # The builtin SHA-256: the same digest as OpenSSL's, for a sixth fewer instructions
    # on the small payloads of messages (no EVP context per call).
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import sha256 as _sha256

_INLINE = 64
"""The longest data (bytes of JSON) whose fingerprint the in-memory store keeps as text.

A fingerprint is only compared for equality, and a record in this process's memory is
never read by another version: the canonical JSON ``fingerprint_of`` would hash serves
as well as its hash while it is no longer (64 bytes of data, about the 66 characters of
``"2:"`` and the hex digest), for a fifth of the cost (no SHA-256). The store takes the
text and its hash as one fingerprint (``live_outcome``), so a claim made with
``fingerprint_of``'s value meets a record of the fast path as it would its own."""

_RESULT = "2:"
"""The prefix of results stored as msgspec JSON (see _Results)."""

_RESULTS = msgspec.json.Encoder(decimal_format="string")
_NULL = _RESULT + "null"


def default_key(envelope: Envelope[Message]) -> str:
    """Return the envelope's ``idempotency_key`` if the sender set one, else its id."""
    return envelope.idempotency_key or envelope.message_id


@attrs.frozen
class IdempotencyMiddleware:
    """Runs each handler at most once per key; duplicates get the first run's result.

    The key is ``key(envelope)`` (by default :func:`default_key`), scoped by handler
    name, so two subscribers of one event deduplicate independently. For each run:

    1. ``store.claim`` atomically: the first caller records IN_PROGRESS with a lease
       and the payload's fingerprint, and runs the handler.
    2. Success: the result is stored (JSON through ``converter``) for ``ttl`` seconds
       and returned; a later duplicate gets it back, decoded to the command's declared
       result type (``Command[R]``), without the handler running.
    3. Failure (or cancellation): the claim is released so that a retry can run.
    4. A duplicate of a run still in progress waits for it, polling, at most ``wait``
       seconds (or until the holder's lease expires, when it claims the key itself),
       then raises :class:`~messagebus.DuplicateInProgressError`. Never two runs at once.
    5. The same key with a different payload raises
       :class:`~messagebus.IdempotencyKeyReused` (never retried).

    A holder that crashes keeps its claim until its lease ends (``lease`` seconds); a
    handler that runs longer than its lease may run a second time, so set the lease
    above your slowest run. Completed records are removed by ``store.cleanup()`` after
    their TTL.

    Inbox mode (``inbox=True``): for a handler that writes to the outbox's database in a
    unit of work, ``[UnitOfWorkMiddleware(bus), IdempotencyMiddleware(store, inbox=True)]``
    with ``store`` an SQL store (:class:`~messagebus.extension.InboxStore`) made from
    the database object the bus's outbox was made from (``database.idempotency()`` and
    ``database.outbox()`` of one :class:`~messagebus.sqlite.SQLiteDatabase` or
    :class:`~messagebus.postgres.PostgresDatabase`; its table may be in any schema of
    that database). The claim and
    the completion record are then written in the unit of work's transaction
    (:meth:`~messagebus.extension.InboxStore.claim_in`,
    :meth:`~messagebus.extension.InboxStore.complete_in`), with the handler's own
    writes and its outbox messages: all commit together, or none does. So the effect is
    exactly once per key, even across crashes:

    - A failure is released by the rollback: no row, no record; a retry runs again.
    - A holder that dies before the commit leaves nothing behind (its transaction rolls
      back): no stale IN_PROGRESS record, no lease to wait out. The lease never lets a
      second run in while the first is open.
    - A concurrent duplicate waits for the holder's transaction to end (PostgreSQL: on
      the record's unique key, at most ``wait`` seconds, then
      :class:`~messagebus.DuplicateInProgressError`; SQLite: for the file's write lock,
      which the unit of work holds throughout), then gets the stored result.
    - An IN_PROGRESS record is seen only when the table is also used outside inbox
      mode: then :class:`~messagebus.DuplicateInProgressError` at once (waiting inside
      the transaction would hold up that holder).
    - Without an open unit of work, with a store that is not an
      :class:`~messagebus.extension.InboxStore`, or with a store on another database
      object than the unit of work's transaction (``unit.transaction.database is not
      store.database``: one identity check, whatever the paths or DSNs say; two objects
      on one file are two connections, hence two transactions), the run raises
      :class:`~messagebus.InboxConfigurationError` (never retried): the
      store's kind when the middleware is made, the rest on every run.

    Nothing between the unit of work and this middleware may swallow the handler's
    exception: the rollback is what releases the claim.

    Place it inside a retry middleware: each retry claims again (the failed run released
    its claim), and a retry after a run that succeeded but whose caller failed later
    gets the stored result instead of a second run.

    Args:
        store: where records live (see :mod:`messagebus.idempotency`).
        key: the key of an envelope; None from it falls back to :func:`default_key`.
        fingerprint: what part of the message must match for a duplicate to be one
            (default: the whole message); its JSON is hashed with SHA-256 (see
            :meth:`fingerprint_of`).
        lease: seconds a claim holds before another caller may take it over; shorter
            when an entry point's deadline leaves less (:func:`~messagebus.extension.time_left`).
        ttl: seconds a completed result is kept for duplicates.
        wait: seconds a duplicate waits for an in-progress run before giving up.
        converter: cattrs converter for results and fingerprints.
        sleep, clock: injectable waiting and monotonic time, for tests; a
            :class:`~messagebus.extension.Clock` as ``clock`` (a fake clock) gives both.
        inbox: write the records in the current unit of work's transaction (above).
    """

    provides_idempotency: ClassVar[bool] = True

    store: IdempotencyStore
    key: Callable[[Envelope[Message]], str | None] = default_key
    fingerprint: Callable[[Message], object] | None = None
    lease: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    ttl: float = attrs.field(default=24 * 3600.0, validator=attrs.validators.gt(0))
    wait: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    converter: cattrs.Converter = attrs.field(factory=make_converter)
    sleep: Callable[[float], Awaitable[None]] | None = None
    clock: TimeSource = time.monotonic
    logger: Any = None
    inbox: bool = attrs.field(default=False, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.inbox and not isinstance(self.store, InboxStore):
            raise InboxConfigurationError(
                f"inbox mode needs an SQL idempotency store on the outbox's database, not "
                f"{type(self.store).__name__}"
            )

    def bind(self, handler: HandlerInfo) -> Middleware:
        """Return the idempotency layer for ``handler``, scoped by its name."""
        scope = handler.name
        result_type = _result_type(handler.message_type)
        store, ttl = self.store, self.ttl
        key_of = self.key
        log = get_logger("messagebus") if self.logger is None else self.logger

        results = _Results(result_type, self.converter)
        decode = results.decode

        async def in_unit_of_work(envelope: Envelope[Message], call_next: CallNext) -> Any:
            unit = current_unit_of_work()
            if unit is None:
                raise InboxConfigurationError(
                    f"handler {scope}: IdempotencyMiddleware(inbox=True) runs only in a unit "
                    "of work; put UnitOfWorkMiddleware(bus) outside it"
                )
            inbox = typing.cast(InboxStore, store)
            if database_of(unit.transaction) is not inbox.database:
                raise InboxConfigurationError(
                    f"handler {scope}: inbox mode needs the {type(store).__name__} on the "
                    "database object of the unit of work's outbox; make both from one "
                    "database: database.idempotency() and database.outbox()"
                )
            key = key_of(envelope) or default_key(envelope)
            outcome = await self._claim_in(unit, inbox, scope, key, envelope)
            if isinstance(outcome, InProgress):
                # Claimed outside inbox mode and committed: waiting here, in a transaction
                # that may hold the record's lock (or the file's), would hold up its holder.
                raise DuplicateInProgressError(
                    f"key {key!r} of handler {scope} is in progress outside inbox mode"
                )
            if isinstance(outcome, Completed):
                log.info("duplicate message: stored result returned", handler=scope, key=key)
                return decode(outcome.result)
            if isinstance(outcome, Mismatch):
                raise _reused(key, scope)
            # A failure needs no release: it rolls back the unit of work, claim included.
            result = await call_next(envelope)
            text = results.encode(result)
            token = outcome.token
            await unit.run(
                lambda connection: inbox.complete_in(connection, scope, key, token, text, ttl=ttl)
            )
            return result

        async def deduplicate(envelope: Envelope[Message], call_next: CallNext) -> Any:
            key = key_of(envelope) or default_key(envelope)
            outcome, digest = await self._claim(scope, key, envelope)
            if isinstance(outcome, InProgress):
                outcome = await self._wait_for_holder(scope, key, digest)
            if isinstance(outcome, Completed):
                log.info("duplicate message: stored result returned", handler=scope, key=key)
                return decode(outcome.result)
            if isinstance(outcome, Mismatch):
                raise _reused(key, scope)
            try:
                result = await call_next(envelope)
            except BaseException:
                # Even when cancelled: a claim left behind would block retries until its
                # lease ends.
                with anyio.CancelScope(shield=True):
                    await store.release(scope, key, outcome.token)
                raise
            await store.complete(scope, key, outcome.token, results.encode(result), ttl)
            return result

        if self.inbox:
            return in_unit_of_work
        if type(store) is InMemoryIdempotencyStore:
            return self._in_memory(store, scope, results, handler.message_type)
        return deduplicate

    def _in_memory(
        self,
        store: InMemoryIdempotencyStore,
        scope: str,
        results: _Results,
        message_type: type[Message],
    ) -> Middleware:
        """Return ``deduplicate`` for the in-memory store, without its coroutines.

        The same steps and outcomes as the general layer, at a third of its cost: the
        synchronous claims of the store's :meth:`~InMemoryIdempotencyStore.scope` (two
        coroutines, a token and a :class:`~messagebus.idempotency.Claimed` fewer), the
        default key and the fingerprint computed inline, the JSON of the type's name and
        version written once. The fingerprint is :meth:`fingerprint_of`'s value, or for
        data of at most ``_INLINE`` bytes the JSON text that value hashes. Anything but
        a new claim goes the general way.
        """
        records = store.scope(scope)
        claim, complete, release = records.claim, records.complete, records.release
        key_of = None if self.key is default_key else self.key
        subject_of, fingerprint_of = self.fingerprint, self.fingerprint_of
        lease, ttl = self.lease, self.ttl
        encode, decode, settle = results.encode, results.decode, self._settle
        log = get_logger("messagebus") if self.logger is None else self.logger
        # What fingerprint_of encodes, [name, version, subject], up to the subject.
        name, version = message_type.__message_name__, message_type.__message_version__
        inline = len(_ENCODER.encode((name, version, None))) - len(b"null") + _INLINE

        async def deduplicate(envelope: Envelope[Message], call_next: CallNext) -> Any:
            key = (
                envelope.idempotency_key or envelope.message_id
                if key_of is None
                else key_of(envelope) or default_key(envelope)
            )
            message = envelope.message
            if type(message) is message_type:
                subject = message if subject_of is None else subject_of(message)
                try:
                    text = _ENCODER.encode((name, version, subject))
                except (TypeError, ValueError):  # msgspec.EncodeError is a ValueError
                    digest = fingerprint_of(envelope)  # which falls back to the cattrs form
                else:
                    # The text itself while no longer than its hash (see _INLINE).
                    digest = (
                        text.decode()
                        if len(text) <= inline
                        else _FINGERPRINT + _sha256(text).hexdigest()
                    )
            else:  # a subclass: its own name and version
                digest = fingerprint_of(envelope)
            claimed = claim(key, digest, lease)
            if not isinstance(claimed, list):
                if type(claimed) is Completed:  # a duplicate: the common case after a claim
                    log.info("duplicate message: stored result returned", handler=scope, key=key)
                    return decode(claimed.result)
                return await settle(
                    envelope,
                    call_next,
                    scope=scope,
                    key=key,
                    outcome=claimed,
                    digest=digest,
                    results=results,
                )
            try:
                result = await call_next(envelope)
            except BaseException:
                release(key, claimed)  # awaits nothing: no cancel scope needed
                raise
            complete(claimed, encode(result), ttl)
            return result

        return deduplicate

    async def _settle(
        self,
        envelope: Envelope[Message],
        call_next: CallNext,
        *,
        scope: str,
        key: str,
        outcome: ClaimOutcome,
        digest: str,
        results: _Results,
    ) -> Any:
        """Finish a run whose first claim found a live record (the in-memory fast path).

        A mismatch is never compared again in the cattrs form (as :meth:`_claim` does):
        no earlier messagebus wrote to a store in this process's memory.
        """
        if isinstance(outcome, InProgress):
            outcome = await self._wait_for_holder(scope, key, digest)
        if isinstance(outcome, Completed):
            log = get_logger("messagebus") if self.logger is None else self.logger
            log.info("duplicate message: stored result returned", handler=scope, key=key)
            return results.decode(outcome.result)
        if isinstance(outcome, Mismatch):
            raise _reused(key, scope)
        # Claimed: the holder's lease ended while this run waited for it.
        token = typing.cast(Claimed, outcome).token
        try:
            result = await call_next(envelope)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.release(scope, key, token)
            raise
        await self.store.complete(scope, key, token, results.encode(result), self.ttl)
        return result

    async def _claim(
        self, scope: str, key: str, envelope: Envelope[Message]
    ) -> tuple[ClaimOutcome, str]:
        """Claim ``key``; return the outcome and the fingerprint it was compared with."""
        digest = self.fingerprint_of(envelope)
        outcome = await self.store.claim(scope, key, digest, capped_lease(self.lease))
        if _by_an_earlier_version(outcome):
            digest = self.legacy_fingerprint_of(envelope)
            outcome = await self.store.claim(scope, key, digest, capped_lease(self.lease))
        return outcome, digest

    async def _claim_in(
        self,
        unit: UnitOfWork,
        inbox: InboxStore,
        scope: str,
        key: str,
        envelope: Envelope[Message],
    ) -> ClaimOutcome:
        """Claim ``key`` in ``unit``'s transaction (inbox mode), as :meth:`_claim` does."""
        lease, wait = capped_lease(self.lease), self.wait
        digest = self.fingerprint_of(envelope)
        outcome = await unit.run(
            lambda connection: inbox.claim_in(connection, scope, key, digest, lease, wait=wait)
        )
        if _by_an_earlier_version(outcome):
            legacy = self.legacy_fingerprint_of(envelope)
            outcome = await unit.run(
                lambda connection: inbox.claim_in(connection, scope, key, legacy, lease, wait=wait)
            )
        return outcome

    def fingerprint_of(self, envelope: Envelope[Message]) -> str:
        """Return ``"2:"`` and the SHA-256 (hex) of the type, version and fingerprinted data.

        The data is encoded by msgspec as deterministic JSON (fields in order, dict keys
        and set items sorted, Decimals as strings): a fifth of the cost of the cattrs
        form :meth:`legacy_fingerprint_of` hashes, which is used instead for data msgspec
        cannot encode, and to compare with records an earlier messagebus claimed.
        """
        message = envelope.message
        subject = message if self.fingerprint is None else self.fingerprint(message)
        try:
            text = _ENCODER.encode((message.__message_name__, message.__message_version__, subject))
        except (TypeError, ValueError):  # msgspec.EncodeError is a ValueError
            return self.legacy_fingerprint_of(envelope)
        digest: str = _sha256(text).hexdigest()
        return _FINGERPRINT + digest

    def legacy_fingerprint_of(self, envelope: Envelope[Message]) -> str:
        """Return the SHA-256 (hex) of the type, version and data as cattrs' sorted JSON."""
        message = envelope.message
        subject = message if self.fingerprint is None else self.fingerprint(message)
        payload = [
            envelope.message_type,
            envelope.message_version,
            self.converter.unstructure(subject),
        ]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    async def _wait_for_holder(self, scope: str, key: str, digest: str) -> Any:
        """Poll until the holder finishes, its lease ends, or ``wait`` runs out."""
        clock, sleep = monotonic_time(self.clock), sleep_of(self.clock, self.sleep)
        give_up_at = clock() + self.wait
        pause = 0.01
        while True:
            remaining = give_up_at - clock()
            if remaining <= 0:
                raise DuplicateInProgressError(
                    f"key {key!r} of handler {scope} is being handled elsewhere; gave up "
                    f"waiting after {self.wait} s"
                )
            await sleep(min(pause, remaining))
            pause = min(pause * 2, 1.0)
            outcome = await self.store.claim(scope, key, digest, capped_lease(self.lease))
            if not isinstance(outcome, InProgress):
                return outcome

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each handler."""
        raise ArgumentTypeError(
            "IdempotencyMiddleware is bound per handler by the bus; do not call it"
        )


class _Results:
    """How one handler's results are stored: msgspec JSON prefixed ``2:``, else cattrs'.

    msgspec writes and reads a result a tenth of the time cattrs takes. A result type it
    cannot read (or a result it cannot write) is stored as cattrs' JSON, unprefixed, the
    form earlier versions stored, which :meth:`decode` keeps reading: records live for
    their TTL across an upgrade.
    """

    def __init__(self, result_type: Any, converter: cattrs.Converter) -> None:
        self._type = None if result_type is type(None) else result_type
        self._converter = converter
        try:
            self._decoder: msgspec.json.Decoder[Any] | None = (
                msgspec.json.Decoder() if self._type is None else msgspec.json.Decoder(self._type)
            )
        except TypeError:  # a type msgspec cannot build
            self._decoder = None

    def encode(self, result: Any) -> str:
        """Return ``result`` as stored text."""
        if self._decoder is not None:
            if result is None:  # what most commands and every event handler return
                return _NULL
            try:
                return _RESULT + _RESULTS.encode(result).decode()
            except (TypeError, ValueError):  # msgspec.EncodeError is a ValueError
                pass
        return json.dumps(self._converter.unstructure(result))

    def decode(self, text: str) -> Any:
        """Return the result stored as ``text`` (either form)."""
        if self._decoder is not None and text.startswith(_RESULT):
            return self._decoder.decode(text[len(_RESULT) :])
        data = json.loads(text)
        return data if self._type is None else self._converter.structure(data, self._type)


def _by_an_earlier_version(outcome: ClaimOutcome) -> bool:
    """Tell whether a mismatch is with a fingerprint of an earlier messagebus.

    Those hashed cattrs' JSON (no ``"2:"`` prefix); their records live for their TTL
    across an upgrade, so the claim is compared again in that form.
    """
    return isinstance(outcome, Mismatch) and not outcome.fingerprint.startswith(_FINGERPRINT)


def _reused(key: str, scope: str) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"idempotency key {key!r} of handler {scope} was used before for a different payload"
    )


def _result_type(message_type: type[Message]) -> Any:
    """Return ``R`` of a ``Command[R]`` subclass; None for events and undeclared results."""
    for klass in message_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Command:
                (result,) = typing.get_args(base)
                return None if isinstance(result, typing.TypeVar) or result is Any else result
    return None
