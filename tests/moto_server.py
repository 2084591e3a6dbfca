"""moto's server mode in a thread on 127.0.0.1 and a free port: every AWS call crosses HTTP."""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass

from moto.server import ThreadedMotoServer


@dataclass(slots=True)
class MotoServer:
    server: ThreadedMotoServer
    endpoint_url: str

    @classmethod
    def start(cls) -> MotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
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
