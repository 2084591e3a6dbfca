"""moto's server mode in a thread on 127.0.0.1 and a free port: every AWS call crosses HTTP,
and DynamoDB's item writes are atomic as on AWS (see `_OneDynamoDbRequestAtATime`)."""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

_DYNAMODB_TARGET = "DynamoDB_20120810."


class _OneDynamoDbRequestAtATime:
    """WSGI middleware: DynamoDB requests are handled one at a time.

    DynamoDB applies each item write atomically; moto's handlers read, change and store items
    in Python with no lock, so two concurrent `UpdateItem`s of one item (the daily counter of two
    shards, say) can lose one of the updates on moto's threaded server. Serialising DynamoDB's
    requests gives the tests AWS's atomicity (coarser than AWS's, never weaker); every other
    service stays concurrent."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(_DYNAMODB_TARGET):
            with self._lock:
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


class _AtomicMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = _OneDynamoDbRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass(slots=True)
class MotoServer:
    server: ThreadedMotoServer
    endpoint_url: str

    @classmethod
    def start(cls) -> MotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = _AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(server, f"http://{host}:{port}")

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        self.server.stop()
