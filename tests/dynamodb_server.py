"""A DynamoDB-compatible server for the tests: moto's, one request at a time.

Run as a script (``python tests/dynamodb_server.py``): it binds a free port of
127.0.0.1, prints ``PORT <n>`` on its first line once it listens, and serves until it
is terminated.

Why one request at a time: moto's threaded server runs requests concurrently against
one in-memory backend, and its conditional PutItem checks and writes without a lock: in
a measurement of 20 rounds of 50 concurrent claims of one key, one round had two
winners. DynamoDB applies the writes to one item one at a time; a lock around each
request gives the emulator that same guarantee (and no more: requests still interleave
with each other, so a store that reads then writes still loses the race here, as it
would on AWS).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

Start = Callable[..., Any]


def serialized(app: Callable[[dict[str, Any], Start], Iterable[bytes]]) -> Any:
    """Wrap a WSGI app so that one request runs at a time, its body read inside the lock."""
    lock = threading.Lock()

    def locked(environ: dict[str, Any], start_response: Start) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return locked


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, serialized(app), threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
