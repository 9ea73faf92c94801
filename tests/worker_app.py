"""An application module for ``messagebus worker``: its transport comes from the environment.

Its bus reads ``MESSAGEBUS_TRANSPORT`` (``transport_from_env()``). The ready hooks are
what the tests name with ``--ready-hook``: ``enqueue_job`` gives the worker one job of
``WORKER_APP_JOB_SECONDS`` (an in-memory queue lives only in the worker's process), and
``stop_at_once`` and ``remember_and_stop`` send this process SIGTERM (the in-process
tests of the command; the second keeps the running bus in ``seen``).
"""

from __future__ import annotations

import os
import signal

import anyio
import attrs

from messagebus import Command, MessageBus
from messagebus.transports._url import transport_from_env


@attrs.frozen
class Job(Command[None], name="test.worker-app.job"):
    seconds: float


seen: list[MessageBus] = []


async def run_job(job: Job) -> None:
    print("started", flush=True)
    await anyio.sleep(job.seconds)  # the work itself: the test waits on output, not on this
    print("finished", flush=True)


def make_bus() -> MessageBus:
    """A new bus on the transport MESSAGEBUS_TRANSPORT names (a factory, for in-process runs)."""
    made = MessageBus(transport=transport_from_env(), service="cli-jobs")
    made.handler(Job, run_job)
    return made


bus = make_bus()


async def enqueue_job(running: MessageBus) -> None:
    await running.enqueue(Job(float(os.environ.get("WORKER_APP_JOB_SECONDS", "0.5"))))


def stop_at_once(running: MessageBus) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


async def remember_and_stop(running: MessageBus) -> None:
    seen.append(running)
    os.kill(os.getpid(), signal.SIGTERM)


not_a_function = 42
