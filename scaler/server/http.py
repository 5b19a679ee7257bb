"""The HTTP face of scaler: /metrics, /healthz, /readyz and the bearer-token Alertmanager webhook."""

from __future__ import annotations

import hmac
import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import ValidationError

from scaler.alerts.payload import Payload
from scaler.alerts.plan import Outcome
from scaler.yamlio import problems_from

log = logging.getLogger(__name__)

Headers = dict[str, str]
ReadyCheck = Callable[[], tuple[bool, str]]
"""Says whether the process can do its job now: (True, "ok") or (False, "why not")."""

REJECT_REASONS = ("unauthorized", "too_large", "length_required", "bad_json", "bad_payload", "read_failed")


@dataclass(frozen=True)
class Webhook:
    """Where Alertmanager posts, the token it must present, and what to do with a valid payload."""

    token: str = field(repr=False)
    submit: Callable[[Payload], list[Outcome]]
    path: str = "/alertmanager"
    max_body_bytes: int = 1 << 20  # Alertmanager's largest groups are a few hundred KiB; cap the rest


class WebhookMetrics:
    """Counters for the webhook: every request, each rejection by reason, and accepted payloads."""

    def __init__(self, registry: CollectorRegistry):
        self.received = Counter("scaler_webhook_received_total", "Webhook requests received",
                                registry=registry)
        self.rejected = Counter("scaler_webhook_rejected_total", "Webhook requests rejected, by reason",
                                ["reason"], registry=registry)
        self.accepted = Counter("scaler_webhook_accepted_total", "Webhook payloads accepted for dispatch",
                                registry=registry)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)


def _always_ready() -> tuple[bool, str]:
    return True, "ok"


def _one_line(err: ValidationError) -> str:
    """'alerts[0].fingerprint: Field required' - the first problems, on one line, bounded."""
    problems = [str(p) if p.where else f"payload: {p.what}" for p in problems_from(err)]
    text = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    return text[:400]


class _Handler(BaseHTTPRequestHandler):
    app: Server  # set on the per-server subclass
    server_version = "scaler"
    # A client that stops sending mid-body must not hold a thread forever.
    timeout = 10.0

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(HTTPStatus.OK, generate_latest(self.app.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._text(HTTPStatus.OK, "ok")
        elif path == "/readyz":
            ok, why = self.app.ready()
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._text(status, why or ("ok" if ok else "not ready"))
        elif self.app.webhook is not None and path == self.app.webhook.path:
            self._text(HTTPStatus.METHOD_NOT_ALLOWED, "use POST", extra={"Allow": "POST"})
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:  # noqa: N802
        hook = self.app.webhook
        if hook is None or self.path.split("?", 1)[0] != hook.path:
            self.close_connection = True
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        self.app.metrics.received.inc()
        # Authenticate before reading the body: an unauthenticated caller gets nothing parsed and nothing run.
        if not self._authorized(hook.token):
            self._reject("unauthorized", HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token",
                         extra={"WWW-Authenticate": 'Bearer realm="scaler"'})
            return
        body = self._body(hook.max_body_bytes)
        if body is None:
            return
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._reject("bad_json", HTTPStatus.BAD_REQUEST, f"invalid JSON: {e}")
            return
        try:
            payload = Payload.model_validate(data)
        except ValidationError as e:
            self._reject("bad_payload", HTTPStatus.BAD_REQUEST, f"invalid payload: {_one_line(e)}")
            return
        outcomes = hook.submit(payload)
        self.app.metrics.accepted.inc()
        reply = {"status": "accepted", "alerts": [o.as_json() for o in outcomes]}
        self._reply(HTTPStatus.ACCEPTED, json.dumps(reply).encode(), "application/json")

    def _authorized(self, token: str) -> bool:
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant-time comparison: response timing must not reveal how much of a guess was right.
        return hmac.compare_digest(given.strip().encode(), token.encode())

    def _body(self, cap: int) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.strip().isdigit():
            self._reject("length_required", HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return None
        length = int(length_header)
        if length > cap:
            self._reject("too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {cap} bytes")
            return None
        try:
            body = self.rfile.read(length)
        except OSError as e:
            self.app.metrics.rejected.labels(reason="read_failed").inc()
            self.close_connection = True
            log.warning("webhook: reading the body failed: %s", e)
            return None
        if len(body) != length:
            self._reject("read_failed", HTTPStatus.BAD_REQUEST, "body shorter than Content-Length")
            return None
        return body

    def _reject(self, reason: str, status: HTTPStatus, text: str, extra: Headers | None = None) -> None:
        self.app.metrics.rejected.labels(reason=reason).inc()
        # The unread body (if any) stays on the socket; closing the connection keeps the next request clean.
        self.close_connection = True
        log.warning("webhook from %s rejected (%s): %s", self.client_address[0], reason, text)
        self._text(status, text, extra=extra)

    def _text(self, status: HTTPStatus, text: str, extra: Headers | None = None) -> None:
        self._reply(status, (text + "\n").encode(), "text/plain; charset=utf-8", extra)

    def _reply(self, status: HTTPStatus, body: bytes, ctype: str, extra: Headers | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        # The request line holds no secret (the token travels in a header, never logged); keep it at debug.
        log.debug("%s %s", self.client_address[0], format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # A client hanging up mid-reply is routine (a timeout on Alertmanager's side); anything else is a bug
        # worth a traceback, in the log rather than on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("client %s went away: %s", client_address[0], sys.exc_info()[1])
        else:
            log.exception("request from %s failed", client_address[0])


class Server:
    """A threaded HTTP server bound at construction (port 0 picks a free one), run on a background thread."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook: Webhook | None = None,
        ready: ReadyCheck | None = None,
    ):
        self.registry = registry
        self.webhook = webhook
        self.ready: ReadyCheck = ready or _always_ready
        self.metrics = WebhookMetrics(registry)
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = _HTTPServer((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Server:
        # serve_forever checks for shutdown every poll_interval: 0.1 s makes stop() quick at ~10 wakeups/s.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="scaler-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, finish the loop, close the socket. Safe to call twice."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
