"""A stand-in OTLP/HTTP collector: accepts trace exports on a local port, as a collector
would, so that the cost c360 pays for tracing can be measured (`make bench --tracing`) and its
exports inspected (the tracing tests keep the bodies)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sources.net import free_port


@dataclass
class Received:
    """What the receiver was sent: export requests, their size in bytes, and (if kept) each
    one's path, content type and body."""

    keep: bool
    requests: int = 0
    size: int = 0  # bytes
    bodies: list[tuple[str, str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, content_type: str, body: bytes) -> None:
        with self._lock:
            self.requests += 1
            self.size += len(body)
            if self.keep:
                self.bodies.append((path, content_type, body))


@contextlib.contextmanager
def otlp_receiver(*, keep: bool = False) -> Iterator[tuple[str, Received]]:
    """A receiver on a free local port while the block runs: its base URL (spans go to
    `<url>/v1/traces`) and what it received."""
    received = Received(keep)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.add(self.path, self.headers.get("content-type", ""), body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass  # quiet, as a collector is to its senders

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
