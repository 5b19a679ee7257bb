"""The server under pressure: a burst of alerts, slow and idle clients, the connection cap, hostile bodies, and
dispatch kept off the event loop. Every test talks to a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry

from scaler.alerts.dispatch import Dispatcher, TriggerMetrics
from scaler.alerts.payload import Payload
from scaler.alerts.plan import Outcome
from scaler.server.http import Limits, Server, Webhook
from tests.server.test_http import RULES, TOKEN, App, body
from tests.support.fake_runbooks import FakeRunbookService

CAP = 1 << 20  # the default body cap: big enough for the hostile bodies below to reach the JSON parser


@contextmanager
def running(limits: Limits | None = None, submit: Callable[[Payload], list[Outcome]] | None = None,
            workers: int = 4) -> Iterator[App]:
    registry = CollectorRegistry()
    service = FakeRunbookService()
    dispatcher = Dispatcher(service=service, rules=RULES, metrics=TriggerMetrics(registry), workers=workers)
    hook = Webhook(token=TOKEN, submit=submit or dispatcher.submit, max_body_bytes=CAP)
    server = Server(registry=registry, port=0, webhook=hook, limits=limits or Limits())
    try:
        with server:
            yield App(server, dispatcher, service)
    finally:
        dispatcher.close()


@pytest.fixture
def app() -> Iterator[App]:
    with running() as a:
        yield a


def _head(port: int, lines: list[str]) -> bytes:
    return ("\r\n".join([*lines, f"Host: 127.0.0.1:{port}", "", ""])).encode()


def _answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 5 s pass)."""
    s.settimeout(5)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _post_part(port: int, lines: list[str], part: int) -> bytes:
    """Send the headers and the first `part` bytes of a longer body, then read the answer to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_head(port, lines) + b"x" * part)
        return _answer(s)


# --- a burst of alerts -------------------------------------------------------------------------------------


def test_a_burst_of_200_concurrent_alerts_is_answered_in_full(app: App) -> None:
    # An alert storm: 200 Alertmanager groups post at the same instant. Every one gets an answer; none is
    # reset at the door (a listen backlog of 5 reset about half of them).
    n = 200
    start = threading.Barrier(n)
    results: list[int | str] = []

    def post(i: int) -> None:
        data = json.dumps(body(fp=f"{i:016x}")).encode()
        start.wait()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", app.server.port, timeout=30)
            conn.request("POST", "/alertmanager", body=data,
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            results.append(resp.status)
            conn.close()
        except OSError as e:  # a reset or a refused connection is what this test is about
            results.append(type(e).__name__)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(results) == {202: n}
    assert app.dispatcher.drain(30)
    assert len(app.service.calls) == n  # distinct alerts: each one started its run exactly once


# --- slow and idle clients ---------------------------------------------------------------------------------


def test_slow_header_clients_are_cut_off_while_a_normal_request_is_served() -> None:
    # 20 clients drip a request's headers one byte every 0.1 s: each byte comes well within any per-read
    # timeout, so only a deadline on the whole header stops them from holding the server for good.
    limits = Limits(header_timeout=1.0)
    with running(limits) as a:
        request = _head(a.server.port, ["POST /alertmanager HTTP/1.1", f"Authorization: Bearer {TOKEN}",
                                        "Content-Type: application/json", "Content-Length: 2"]) + b"{}"
        slow = [socket.create_connection(("127.0.0.1", a.server.port), timeout=5) for _ in range(20)]
        opened = time.monotonic()
        closed_after: dict[int, float] = {}
        answers: dict[int, bytes] = {}
        served = None
        sent = 0
        while len(closed_after) < len(slow) and time.monotonic() - opened < 5 * limits.header_timeout:
            for i, s in enumerate(slow):
                if i in closed_after:
                    continue
                if select.select([s], [], [], 0)[0]:  # the server answered or hung up
                    answers[i] = _answer(s)
                    closed_after[i] = time.monotonic() - opened
                    continue
                try:
                    s.sendall(request[sent:sent + 1])
                except OSError:
                    closed_after[i] = time.monotonic() - opened
            sent += 1
            if served is None and time.monotonic() - opened > 0.5:
                # t+0.5 s: the slow clients are mid-header; an ordinary probe is still answered at once.
                t0 = time.monotonic()
                served = (a.request("GET", "/healthz"), time.monotonic() - t0)
            time.sleep(0.1)
        for s in slow:
            s.close()
    assert served is not None and served[0] == (200, "ok\n") and served[1] < 1.0
    assert sent < len(request)  # no slow client ever finished its headers
    # t+1 s: the header deadline passes; every slow client is cut off (with a 408) soon after.
    assert len(closed_after) == len(slow)
    assert all(limits.header_timeout - 0.2 <= t <= limits.header_timeout + 1.5 for t in closed_after.values()), \
        closed_after
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers.values()), answers


def test_an_idle_connection_is_closed_after_the_header_deadline() -> None:
    # A client that connects and sends nothing at all must not hold a connection either.
    with running(Limits(header_timeout=0.5)) as a:
        with socket.create_connection(("127.0.0.1", a.server.port), timeout=5) as s:
            t0 = time.monotonic()
            assert _answer(s) == b""  # closed without a word: there was no request to answer
            assert time.monotonic() - t0 < 1.5


def test_a_body_that_stalls_gets_408_at_the_body_deadline() -> None:
    # Headers in, then 10 of 100 body bytes, then nothing: the webhook gives up at the body deadline.
    with running(Limits(body_timeout=0.5)) as a:
        t0 = time.monotonic()
        answer = _post_part(a.server.port, ["POST /alertmanager HTTP/1.1", f"Authorization: Bearer {TOKEN}",
                                            "Content-Length: 100"], 10)
        assert time.monotonic() - t0 < 1.5
        assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b"body not received within 0.5 s\n")
        assert a.metric('scaler_webhook_rejected_total{reason="read_failed"}') == 1


def test_connections_beyond_the_cap_get_503_not_a_reset() -> None:
    # 12 clients hold connections with half-sent headers; the cap is 10, so the next request is refused
    # politely with a 503 (Alertmanager retries it), and served again once the holders are gone.
    with running(Limits(max_connections=10, header_timeout=5.0)) as a:
        holders = [socket.create_connection(("127.0.0.1", a.server.port), timeout=5) for _ in range(12)]
        for s in holders:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.2)
        status, _ = a.post(body())
        assert status == 503
        for s in holders:
            s.close()
        time.sleep(0.3)
        assert a.post(body())[0] == 202


# --- hostile bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 100_000, "invalid JSON: nested deeper than 32 levels"),
        (b'{"a":' * 50_000, "invalid JSON: nested deeper than 32 levels"),
        (b'{"receiver": "x", "truncatedAlerts": ' + b"9" * 5000 + b"}",
         "invalid JSON: a number of 5000 characters (at most 64)"),
        (b'{"receiver": 1.' + b"5" * 5000 + b"}", "invalid JSON: a number of 5002 characters (at most 64)"),
        (b'{"receiver": NaN}', "invalid JSON: NaN is not a JSON value"),
    ],
    ids=["100k-nested-arrays", "50k-nested-objects", "5000-digit-int", "5000-digit-float", "nan"],
)
def test_bodies_the_parser_cannot_take_get_400_with_one_clear_line(app: App, data: bytes, message: str) -> None:
    status, text = app.post(data)
    assert (status, text) == (400, message + "\n")
    assert app.metric('scaler_webhook_rejected_total{reason="bad_json"}') == 1
    assert app.service.calls == []


def test_a_declared_oversized_body_gets_413_before_the_rest_is_sent(app: App) -> None:
    # Content-Length says 100 MB and 256 KiB of it follow: the answer comes without waiting for the rest, and
    # reaches the client intact although the server never read what it sent (no reset).
    answer = _post_part(app.server.port, ["POST /alertmanager HTTP/1.1", f"Authorization: Bearer {TOKEN}",
                                          "Content-Length: 100000000"], 256 << 10)
    assert re.match(rb"HTTP/1\.[01] 413 ", answer) and answer.endswith(b"body over 1048576 bytes\n")


def test_a_streamed_body_is_cut_off_at_the_cap_without_waiting_for_its_end(app: App) -> None:
    # No Content-Length: a chunked body that passes the 1 MiB cap and never ends. The server stops reading
    # at the cap and answers 413; it does not wait for the rest.
    with socket.create_connection(("127.0.0.1", app.server.port), timeout=5) as s:
        s.sendall(_head(app.server.port, ["POST /alertmanager HTTP/1.1", f"Authorization: Bearer {TOKEN}",
                                          "Transfer-Encoding: chunked"]))
        chunk = b"x" * 65536
        for _ in range(CAP // len(chunk) + 1):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.endswith(b"body over 1048576 bytes\n")
    assert app.metric('scaler_webhook_rejected_total{reason="too_large"}') == 1


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-wrong-token"], ids=["missing", "wrong"])
def test_a_bad_token_gets_401_before_the_body_is_read(app: App, auth: str | None) -> None:
    # A 1 MB body is announced and 256 KiB of it sent: the 401 does not wait for the rest, and it is not
    # lost to a reset because the server left the client's bytes unread.
    lines = ["POST /alertmanager HTTP/1.1", "Content-Length: 1000000"]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    answer = _post_part(app.server.port, lines, 256 << 10)
    assert re.match(rb"HTTP/1\.[01] 401 ", answer) and answer.endswith(b"missing or wrong bearer token\n")
    assert app.service.calls == []


# --- dispatch off the event loop ---------------------------------------------------------------------------


def test_a_slow_dispatch_does_not_stall_probes_or_metrics() -> None:
    # Every dispatch thread is stuck in submit(); probes and /metrics are still answered at once.
    release = threading.Event()
    inner: list[Dispatcher] = []

    def stuck(payload: Payload) -> list[Outcome]:
        release.wait(10)
        return inner[0].submit(payload)

    limits = Limits(dispatch_threads=2)
    with running(limits, submit=stuck) as a:
        inner.append(a.dispatcher)
        answers: list[int] = []
        posts = [threading.Thread(target=lambda i=i: answers.append(a.post(body(fp=f"{i:016x}"))[0]))
                 for i in range(limits.dispatch_threads + 2)]
        for t in posts:
            t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        assert a.request("GET", "/healthz") == (200, "ok\n")
        assert a.request("GET", "/readyz") == (200, "ok\n")
        assert a.metric("scaler_webhook_received_total") == len(posts)
        assert time.monotonic() - t0 < 0.5
        release.set()
        for t in posts:
            t.join(10)
        assert answers == [202] * len(posts)


def test_probes_are_answered_past_the_connection_cap() -> None:
    """An alert storm holds every connection the cap allows: the webhook and /metrics answer 503 (retry), the
    liveness and readiness probes still answer 200, so the kubelet does not restart the server mid-storm."""
    with running(Limits(max_connections=10, header_timeout=5.0)) as a:
        holders = [socket.create_connection(("127.0.0.1", a.server.port), timeout=5) for _ in range(12)]
        for s in holders:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.2)
        assert a.post(body())[0] == 503
        for path, status in (("/healthz", 200), ("/readyz", 200), ("/metrics", 503)):
            with socket.create_connection(("127.0.0.1", a.server.port), timeout=5) as s:
                s.sendall(_head(a.server.port, [f"GET {path} HTTP/1.1", "Connection: close"]))
                got = _answer(s)
            assert got.startswith(f"HTTP/1.1 {status} ".encode()), (path, got[:80])
        for s in holders:
            s.close()
