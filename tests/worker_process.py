"""A worker process for the graceful-shutdown tests: it serves one slow job.

Run as ``python -m tests.worker_process GRACE``; it prints ``ready`` once receiving,
``started``/``finished`` around the job, and on SIGTERM ``stopped acked=N returned=M``.
"""

from __future__ import annotations

import sys

import anyio
import attrs

from messagebus import Command, MessageBus, serve
from messagebus.transports.memory import InMemoryTransport


@attrs.frozen
class SlowJob(Command[None], name="test.job.run"):
    seconds: float


bus = MessageBus(transport=InMemoryTransport(), service="jobs")


@bus.handler(SlowJob)
async def run_job(job: SlowJob) -> None:
    print("started", flush=True)
    await anyio.sleep(job.seconds)  # the work itself: the test waits on output, not on this
    print("finished", flush=True)


async def main(grace: float) -> None:
    async def ready() -> None:
        await bus.enqueue(SlowJob(0.5))
        print("ready", flush=True)

    worker = await serve(bus, provision=True, ready=ready, grace=grace)
    print(f"stopped acked={worker.acked} returned={worker.returned}", flush=True)


if __name__ == "__main__":
    anyio.run(main, float(sys.argv[1]))
