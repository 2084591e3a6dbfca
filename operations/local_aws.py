"""The local AWS of the demo and the tests: moto's server in a thread on 127.0.0.1 and a free
port, so that every AWS call crosses HTTP, with two changes that bring it closer to AWS:

- DynamoDB's item writes are atomic (`_OneDynamoDbRequestAtATime`);
- a table `Query` reads the items of its partition key only (`index_queries_by_partition`),
  as DynamoDB does, rather than sorting the whole table for each call.
"""

from __future__ import annotations

import inspect
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from moto.dynamodb.models.table import Table
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
    requests gives AWS's atomicity (coarser than AWS's, never weaker); every other service stays
    concurrent."""

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


_ONE_PARTITION = threading.local()
"""The partition key a table `Query` of this thread reads, while it runs."""

_original_query = Table.query
_original_all_items = Table.all_items
_QUERY_SIGNATURE = inspect.signature(_original_query)


def _partition_items(table: Table) -> list[Any]:
    """The items `Table.all_items` returns, restricted to the partition a running `Query` of
    this thread reads (all of them otherwise), in the same (range key) order."""
    hash_key = getattr(_ONE_PARTITION, "hash_key", None)
    if hash_key is None:
        return _original_all_items(table)
    stored = table.items.get(hash_key)
    if stored is None:
        return []
    if not table.range_key_attr:
        return [stored]
    return sorted(stored.values(), key=lambda item: item.range_key)


@wraps(_original_query)
def _query_one_partition(table: Table, *args: Any, **kwargs: Any) -> Any:
    bound = _QUERY_SIGNATURE.bind(table, *args, **kwargs)
    hash_key = bound.arguments.get("hash_key")
    if bound.arguments.get("index_name") or hash_key is None:
        return _original_query(table, *args, **kwargs)
    _ONE_PARTITION.hash_key = hash_key
    try:
        return _original_query(table, *args, **kwargs)
    finally:
        _ONE_PARTITION.hash_key = None


def index_queries_by_partition() -> None:
    """Make moto's table `Query` (not an index's) read its partition's items only: moto gathers
    and sorts every item of the table for each `Query` (240 ms at 20,000 items, 700 ms at
    60,000), where DynamoDB reads the partition. The result is the same: moto's own code then
    filters, sorts, pages and projects those items as before
    (tests/integration/test_local_aws.py compares the two on the same tables). Idempotent."""
    # A deliberate patch of the library (see the docstring): its types cannot say so.
    Table.query = _query_one_partition  # type: ignore[method-assign,assignment]
    Table.all_items = _partition_items  # type: ignore[assignment]


@dataclass(slots=True)
class LocalAws:
    """moto's server, started on 127.0.0.1 and a free port."""

    server: ThreadedMotoServer
    endpoint_url: str

    @classmethod
    def start(cls) -> LocalAws:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        index_queries_by_partition()
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
