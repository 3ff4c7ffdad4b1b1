"""The HTTP endpoint of a `conveyor run` process (``CONVEYOR_HTTP_PORT``).

- ``GET /metrics``: Prometheus text, from prometheus_client;
- ``GET /healthz``: liveness, 200 or 503 with a JSON body naming the stale loop or dead thread;
- ``GET /readyz``: readiness, 200 or 503 with a JSON body naming what is missing.

Every answer is computed from what the loops already recorded: a scrape or a probe never
waits for PostgreSQL or RabbitMQ, so it answers at once during an outage too. The server
runs on daemon threads of its own (the standard library's threading HTTP server).
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from conveyor.workers.config import ConfigError
from conveyor.workers.observability.health import Verdict


class Endpoints:
    """What each path answers: the metrics text, and the two verdicts."""

    def __init__(self, *, metrics: Callable[[], bytes], liveness: Callable[[], Verdict],
                 readiness: Callable[[], Verdict]) -> None:
        self.metrics, self.liveness, self.readiness = metrics, liveness, readiness

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self.metrics()
        if path == "/healthz":
            return _verdict(self.liveness(), ok="alive", failed="not alive")
        if path == "/readyz":
            return _verdict(self.readiness(), ok="ready", failed="not ready")
        return 404, "application/json", b'{"error": "not found: try /metrics, /healthz or /readyz"}\n'


def _verdict(verdict: Verdict, *, ok: str, failed: str) -> tuple[int, str, bytes]:
    body = json.dumps(verdict.body(ok=ok, failed=failed), sort_keys=True).encode() + b"\n"
    return (200 if verdict.ok else 503), "application/json", body


class ProbeServer:
    """Serve ``endpoints`` on ``host:port`` until closed; ``port`` 0 picks a free one."""

    def __init__(self, endpoints: Endpoints, *, host: str, port: int) -> None:
        self.endpoints = endpoints
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(endpoints))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(f"invalid setting CONVEYOR_HTTP_PORT: port {port} is already in use "
                                  "(another process serves it; choose another or 0 for a free one)") from None
            raise ConfigError(f"invalid setting CONVEYOR_HTTP_PORT: cannot listen on {host}:{port}: "
                              f"{error.strerror}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(endpoints: Endpoints) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "conveyor"

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            status, content_type, body = endpoints.answer(self.path.split("?", 1)[0])
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the library's signature
            pass  # a probe every few seconds is not worth a log line

    return Handler
