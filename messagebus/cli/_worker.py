"""``messagebus worker``: run an application's handlers on its queue until SIGTERM/SIGINT.

The application module builds its bus as usual; the worker only runs it (see
:func:`messagebus.serve`). Choosing the transport is the module's business, so that
the same module means the same bus under the worker, in tests and in a shell: a module
that builds its bus with ``transport_from_env()`` reads ``MESSAGEBUS_TRANSPORT``, and
``--transport URL`` sets that variable before the module is imported. The command
checks that the module did read it, rather than run on another transport than asked.

The worker refuses to run on an in-memory transport nobody chose: one that
``transport_from_env()`` fell back to because ``MESSAGEBUS_TRANSPORT`` was unset. In a
deployed process that would consume a private queue no other process can reach, and
lose its messages when it stops, without a trace. Memory chosen explicitly
(``--transport memory://``, ``MESSAGEBUS_TRANSPORT=memory://``, or a bus constructed
with an in-memory transport) runs.

On an in-memory transport the worker provisions the service's queues and topics itself,
as ``--provision`` does elsewhere: no other process could.

``--app`` and ``--concurrency`` default to ``MESSAGEBUS_APP`` and
``MESSAGEBUS_CONCURRENCY``.

``--ready-hook module:function`` names a function called with the running bus once the
worker receives (awaited if it returns an awaitable): the place for what must happen
after start-up, such as telling a supervisor, or enqueueing a first job in
development (an in-memory queue lives only in the worker's process).

Output: one line once the worker receives, one summary line when it has stopped; the
exit status is 0 after a graceful stop.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import anyio
import click

from messagebus._bus import MessageBus
from messagebus._config import CONCURRENCY_VARIABLE
from messagebus._errors import ConfigurationError
from messagebus._worker import serve
from messagebus.cli._app import APP, load_bus, load_object
from messagebus.transports._url import DEFAULT_VARIABLE, fell_back, times_read, transport_from_url
from messagebus.transports.memory import InMemoryTransport

__all__ = ["worker"]


@click.command()
@APP
@click.option(
    "--transport",
    "url",
    metavar="URL",
    help=(
        f"memory://, memory://NAME or sqs://...: set as {DEFAULT_VARIABLE} before the app "
        "is imported (it must build its bus with transport_from_env())"
    ),
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    envvar=CONCURRENCY_VARIABLE,
    show_envvar=True,
    help="messages handled at once, at most",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="seconds in-flight handlers get to finish after SIGTERM/SIGINT",
)
@click.option(
    "--provision",
    is_flag=True,
    help="create the service's queues and topics first (always done in memory: nothing "
    "outside this process could)",
)
@click.option(
    "--ready-hook",
    "hook",
    metavar="MODULE:FUNCTION",
    help="called with the bus once the worker receives",
)
def worker(  # click passes options by name
    *,
    app: str,
    url: str | None,
    concurrency: int,
    grace: float,
    provision: bool,
    hook: str | None,
) -> None:
    """Run the app's handlers (--app module:attribute names its MessageBus) on its queue.

    Stops on SIGTERM or SIGINT: no new messages, in-flight handlers get --grace
    seconds, the rest go back to the queue.
    """
    reads = times_read()
    if url is not None:
        try:
            transport_from_url(url)  # refuse a bad URL before importing anything
        except ConfigurationError as error:
            raise click.BadParameter(str(error), param_hint="--transport") from error
        os.environ[DEFAULT_VARIABLE] = url
    bus = load_bus(app)
    if url is not None and times_read() == reads:
        raise click.UsageError(
            f"--transport: {app} did not read {DEFAULT_VARIABLE} as it was imported (build "
            "its bus with transport=transport_from_env()), so the URL would be ignored"
        )
    if bus.transport is None:
        raise click.ClickException(
            f"{app} has no transport, so no queue to consume: give its MessageBus "
            "transport=transport_from_env() (or another transport)"
        )
    if isinstance(bus.transport, InMemoryTransport) and fell_back(bus.transport):
        raise click.ClickException(
            f"no transport configured: {DEFAULT_VARIABLE} is unset, so {app} fell back to "
            "an in-memory queue no other process can reach (its messages die with this "
            f"worker); set {DEFAULT_VARIABLE} or --transport (memory:// to run in memory "
            "on purpose)"
        )
    # An in-memory queue exists only in this process: if the worker does not make it,
    # nothing can, and the worker would only ever say "no queue" and back off.
    provision = provision or isinstance(bus.transport, InMemoryTransport)
    on_ready = None if hook is None else load_object(hook, "--ready-hook")
    if on_ready is not None and not callable(on_ready):
        raise click.BadParameter(f"{hook!r} is not callable", param_hint="--ready-hook")
    summary = anyio.run(_serve, bus, on_ready, provision, concurrency, grace)
    click.echo(summary)


async def _serve(
    bus: MessageBus, on_ready: Any, provision: bool, concurrency: int, grace: float
) -> str:
    async def ready() -> None:
        if on_ready is not None:
            result = on_ready(bus)
            if inspect.isawaitable(result):
                await result
        click.echo(
            f"worker ready: service {bus.router.service}, "
            f"transport {type(bus.transport).__name__}, concurrency {concurrency}"
        )

    done = await serve(bus, provision=provision, ready=ready, concurrency=concurrency, grace=grace)
    return f"worker stopped: received {done.received}, acked {done.acked}, returned {done.returned}"
