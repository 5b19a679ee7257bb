"""A region outage for real: an HTTP proxy on 127.0.0.1 in front of the moto server that fails every call signed
for a down region (HTTP 503, a connection reset before any answer, or no answer at all) and forwards everything
else.

The region comes from the SigV4 credential scope in the Authorization header
(`Credential=AKID/20261203/us-east-1/elasticloadbalancing/aws4_request`), as an AWS endpoint would see it.
Global services are signed for us-east-1 too, so they are let through (Route 53 keeps answering when
us-east-1's regional endpoints do not). Any client works, a `scaler` CLI process included: point its
`--endpoint-url` here. Forwarding uses http.client: urllib.request would add a form Content-Type to bodies,
and moto then answers Route 53 with 404.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
GLOBAL = frozenset({"route53"})
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade", "content-length"}
)
Mode = Literal["503", "reset", "hang"]
HANG_AT_MOST = 60.0  # seconds a hanging call is held before its connection is closed (or until the proxy stops)


@dataclass
class Outage:
    """The proxy's state: which regions are down and how they fail; what it saw, as (region, service, outcome)."""

    upstream: str
    url: str = ""
    down: set[str] = field(default_factory=set)
    mode: Mode = "503"
    seen: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)  # set when the proxy stops: hangs end

    def fail(self, *regions: str, mode: Mode = "503") -> None:
        with self.lock:
            self.down = set(regions)
            self.mode = mode

    def heal(self) -> None:
        with self.lock:
            self.down = set()

    def calls(self, outcome: str | None = None) -> Counter[tuple[str, str]]:
        """(region, service) -> count, of every call or of those that ended `outcome` (passed, 503, reset)."""
        counts: Counter[tuple[str, str]] = Counter()
        with self.lock:
            for (region, service, seen), n in self.seen.items():
                if outcome in (None, seen):
                    counts[(region, service)] += n
        return counts


def handler(outage: Outage) -> type[BaseHTTPRequestHandler]:
    target = urllib.parse.urlsplit(outage.upstream)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

        def log_message(self, *args: object) -> None:
            pass

        def scope(self) -> tuple[str, str]:
            found = SCOPE.search(self.headers.get("Authorization", ""))
            return (found.group(1), found.group(2)) if found else ("", "")

        def body(self) -> bytes:
            size = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(size) if size else b""

        def handle_any(self) -> None:
            body = self.body()
            region, service = self.scope()
            with outage.lock:
                outcome = outage.mode if region in outage.down and service not in GLOBAL else "passed"
                outage.seen[(region, service, outcome)] += 1
            if outcome == "hang":
                # The request was taken and nothing ever comes back, as from a region whose endpoints accept
                # connections and then stall: only the client's own timeout ends the call.
                outage.released.wait(HANG_AT_MOST)
                self.close_connection = True
                return
            if outcome == "reset":
                # SO_LINGER 0: close sends RST, the client reads a reset connection and no answer.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if outcome == "503":
                self.unavailable(region)
                return
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for k, v in answer.getheaders():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                upstream.close()

        def unavailable(self, region: str) -> None:
            # In the protocol the client speaks, so the error reads like the one an AWS endpoint gives.
            message = f"{region} is down (outage proxy)"
            if "json" in self.headers.get("Content-Type", ""):
                data = f'{{"__type":"ServiceUnavailableException","message":"{message}"}}'.encode()
                kind = "application/x-amz-json-1.1"
            else:
                data = (f"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>"
                        f"<Message>{message}</Message></Error></ErrorResponse>").encode()
                kind = "text/xml"
            self.send_response(503, "Service Unavailable")
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any  # noqa: N815

    return Proxy


@contextmanager
def outage_proxy(upstream: str) -> Iterator[Outage]:
    """A proxy to `upstream` (the moto server's URL) on a free 127.0.0.1 port, in a thread; no region down yet."""
    outage = Outage(upstream=upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(outage))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    outage.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield outage
    finally:
        outage.released.set()
        server.shutdown()
        server.server_close()
