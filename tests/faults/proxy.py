"""A small HTTP proxy on 127.0.0.1 in front of moto's server that loses responses.

Every request is forwarded and takes effect; for a seeded fraction (drawn by the fault plan) the
client is then told 500, or the connection is closed, instead of getting the real answer. This
is the fault that breaks naive idempotence: botocore retries a call that already took effect.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.faults.plan import FaultKind, FaultPlan

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_SERVICE_IN_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def service_of(authorization: str | None) -> str | None:
    """The service a SigV4-signed request is for, from its credential scope."""
    if not authorization:
        return None
    match = _SERVICE_IN_SCOPE.search(authorization)
    return match.group(1) if match else None


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream_host: str
    upstream_port: int
    plan: FaultPlan


class _Forwarder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self._forward()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET  # noqa: N815

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(
            self.server.upstream_host, self.server.upstream_port, timeout=60
        )
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            status, reason = response.status, response.reason
            upstream_headers = response.getheaders()
        finally:
            upstream.close()

        kind = self.server.plan.after_effect(service_of(self.headers.get("Authorization")) or "")
        if kind is FaultKind.LOST_RESPONSE_CLOSED:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind is FaultKind.LOST_RESPONSE_500:
            status, reason, payload = 500, "Internal Server Error", b""
            upstream_headers = []
        self.send_response_only(status, reason)
        length = str(len(payload))
        for name, value in upstream_headers:
            if name.lower() == "content-length" and self.command == "HEAD":
                length = value  # a HEAD answer describes the body it does not carry
            elif name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class LossyProxy:
    """Forwards to `upstream_url`; the fault plan decides which responses are lost."""

    def __init__(self, upstream_url: str, plan: FaultPlan) -> None:
        parts = urlsplit(upstream_url)
        server = _ProxyServer(("127.0.0.1", 0), _Forwarder)
        server.upstream_host = parts.hostname or "127.0.0.1"
        server.upstream_port = parts.port or 80
        server.plan = plan
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def lossy_proxy(upstream_url: str, plan: FaultPlan) -> Iterator[LossyProxy]:
    proxy = LossyProxy(upstream_url, plan)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
