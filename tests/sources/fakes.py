"""Stand-ins for a Prometheus API on 127.0.0.1: a raw TCP server that counts connections, and an HTTP server
that records what it was sent and answers a canned body."""

from __future__ import annotations

import json
import socket
import struct
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def http_answer(status: int, body: bytes, *, content_type: str = "application/json",
                headers: Mapping[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, as raw bytes."""
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def vector(*series: tuple[Mapping[str, str], str], at: float = 1_700_000_000.0) -> bytes:
    """A Prometheus /api/v1/query success body holding an instant vector."""
    result = [{"metric": dict(labels), "value": [at, value]} for labels, value in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


@dataclass
class CountingServer:
    """Accepts TCP connections on 127.0.0.1 and counts them. Each one gets `answer` after its request head
    ("answer"), a TCP reset ("reset"), or nothing until the server stops ("silent")."""

    behaviour: Literal["answer", "reset", "silent"] = "answer"
    answer: bytes = b""
    connections: int = 0
    _listener: socket.socket = field(init=False, repr=False)
    _held: list[socket.socket] = field(default_factory=list, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def serve(self) -> threading.Thread:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread) -> None:
        self._stop.set()
        thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1  # counted before anything is sent, so the client cannot outrun it
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            if self.behaviour == "silent":
                self._held.append(conn)
                continue
            if self.behaviour == "reset":
                # linger 0: close() sends RST instead of FIN, as a crashed or overloaded proxy would
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                conn.sendall(self.answer)
            conn.close()


@contextmanager
def counting_server(behaviour: Literal["answer", "reset", "silent"] = "answer",
                    answer: bytes = b"") -> Iterator[CountingServer]:
    server = CountingServer(behaviour, answer)
    thread = server.serve()
    try:
        yield server
    finally:
        server.stop(thread)


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]


@contextmanager
def recording_server(status: int, body: bytes, *, content_type: str = "application/json",
                     echo_authorization: bool = False) -> Iterator[tuple[str, list[Seen]]]:
    """(url, requests seen) of an HTTP server answering every GET with `status` and `body`. With
    `echo_authorization` the body also repeats the Authorization header, as a careless proxy might."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            url = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            seen.append(Seen(url.path, params, {k: v for k, v in self.headers.items()}))
            out = body
            if echo_authorization:
                out += f" (you sent Authorization: {self.headers.get('Authorization')})".encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
