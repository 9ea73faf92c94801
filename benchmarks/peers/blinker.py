"""Peer adapter: ``blinker`` (https://blinker.readthedocs.io, PyPI ``blinker``).

Usage follows blinker's docs ("Subscribing to Signals", "Sending and Receiving
Data Through Signals", "Async receivers"): one ``Signal`` per event type,
receivers connected with ``signal.connect(receiver)`` (``weak=False`` because
the receivers are defined inside a function, as the ``connect`` docstring
advises), the event passed as keyword data next to a sender object.

Receivers are ``async def``; blinker's docs say coroutine receivers are called
and awaited with ``await signal.send_async(sender, **kwargs)`` (``send()``
raises for coroutine receivers unless given an ``_async_wrapper``), so this
adapter uses ``send_async``.

blinker is a signal library without commands or middlewares: S1, S4 and S5
are not supported (``build`` returns ``None``).
"""

from __future__ import annotations

from typing import Any

from ._common import S3_SUBSCRIBERS, Counter, Runner, check_calls, run_blocking

NAME = "blinker"
SYNC = False


class BenchEvent:
    __slots__ = ("seq",)

    def __init__(self, seq: int) -> None:
        self.seq = seq


class _Sender:
    """The object that "sends" the signals (blinker's first positional argument)."""


SENDER = _Sender()


def available() -> bool:
    try:
        import blinker  # noqa: F401
    except ImportError:
        return False
    return True


def build(scenario: str, n: int) -> Runner | None:
    if scenario not in ("S2", "S3"):
        return None

    from blinker import Signal

    counter = Counter()
    bench_event = Signal("bench-event")
    subscribers = 1 if scenario == "S2" else S3_SUBSCRIBERS
    for _ in range(subscribers):
        bench_event.connect(_make_receiver(counter), weak=False)

    messages = [BenchEvent(i) for i in range(n)]
    send_async = bench_event.send_async
    run_blocking(send_async(SENDER, event=BenchEvent(-1)))
    check_calls(NAME, scenario, counter, subscribers)

    async def run() -> None:
        for message in messages:
            await send_async(SENDER, event=message)

    return run


def _make_receiver(counter: Counter) -> Any:
    async def on_bench_event(sender: Any, *, event: BenchEvent) -> None:
        counter.calls += 1

    return on_bench_event
