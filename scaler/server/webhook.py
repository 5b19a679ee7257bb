"""The Alertmanager webhook endpoint: bearer token first, then a bounded body, then parsing and dispatch on a
bounded thread pool, so the event loop only ever moves bytes."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from http import HTTPStatus

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from scaler.alerts.payload import Payload
from scaler.alerts.plan import Outcome
from scaler.server import jsonbody
from scaler.yamlio import problems_from

log = logging.getLogger(__name__)

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


class _TooLarge(Exception):
    pass


def _one_line(err: ValidationError) -> str:
    """'alerts[0].fingerprint: Field required' - the first problems, on one line, bounded."""
    problems = [str(p) if p.where else f"payload: {p.what}" for p in problems_from(err)]
    text = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    return text[:400]


def authorized(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant-time comparison: response timing must not reveal how much of a guess was right.
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def _read(request: Request, cap: int) -> bytes:
    """The body, or _TooLarge as soon as more than `cap` bytes have arrived (the rest is never read)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise _TooLarge
    return bytes(body)


class WebhookEndpoint:
    """POST handler for `hook.path`. Every rejection is a one-line text answer that closes the connection."""

    def __init__(self, hook: Webhook, metrics: WebhookMetrics, pool: Executor, body_timeout: float):
        self.hook, self.metrics, self.pool, self.body_timeout = hook, metrics, pool, body_timeout

    async def handle(self, request: Request) -> Response:
        hook = self.hook
        self.metrics.received.inc()
        # Authenticate before reading the body: an unauthenticated caller gets nothing read, parsed or run.
        if not authorized(request.headers.get("authorization"), hook.token):
            return self._reject(request, "unauthorized", HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token",
                                {"WWW-Authenticate": 'Bearer realm="scaler"'})
        # h11 has already refused a Content-Length that is not digits, and a body both chunked and counted.
        length = request.headers.get("content-length")
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        if length is None and not chunked:
            return self._reject(request, "length_required", HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        too_large = f"body over {hook.max_body_bytes} bytes"
        # Content-Length first: an oversized body is refused before a byte of it is read. (19+ digits is
        # over any cap, and int() of it is never asked for.)
        if length is not None and (len(length) > 18 or int(length) > hook.max_body_bytes):
            return self._reject(request, "too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large)
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await _read(request, hook.max_body_bytes)
        except _TooLarge:  # chunked: no length to check up front, so the cap is enforced while reading
            return self._reject(request, "too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large)
        except TimeoutError:
            return self._reject(request, "read_failed", HTTPStatus.REQUEST_TIMEOUT,
                                f"body not received within {self.body_timeout:g} s")
        except ClientDisconnect:
            self.metrics.rejected.labels(reason="read_failed").inc()
            log.warning("webhook from %s: the client went away mid-body", _peer(request))
            return Response(status_code=HTTPStatus.BAD_REQUEST)  # nobody is left to read it
        # Parsing, validation and dispatch are synchronous: on the pool, the loop keeps serving meanwhile.
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._accept, request, body)

    def _accept(self, request: Request, body: bytes) -> Response:
        try:
            data = jsonbody.parse(body)
        except jsonbody.BadJson as e:
            return self._reject(request, "bad_json", HTTPStatus.BAD_REQUEST, f"invalid JSON: {e}")
        try:
            payload = Payload.model_validate(data)
        except ValidationError as e:
            return self._reject(request, "bad_payload", HTTPStatus.BAD_REQUEST, f"invalid payload: {_one_line(e)}")
        outcomes = self.hook.submit(payload)
        self.metrics.accepted.inc()
        log.debug("webhook from %s: group %s, %d alert(s): %s", _peer(request), payload.groupKey or "-",
                  len(payload.alerts), ", ".join(o.result for o in outcomes))
        reply = {"status": "accepted", "alerts": [o.as_json() for o in outcomes]}
        return Response(json.dumps(reply), HTTPStatus.ACCEPTED, media_type="application/json")

    def _reject(self, request: Request, reason: str, status: HTTPStatus, text: str,
                extra: dict[str, str] | None = None) -> Response:
        self.metrics.rejected.labels(reason=reason).inc()
        log.warning("webhook from %s rejected (%s): %s", _peer(request), reason, text)
        # Any unread body stays on the socket; closing the connection keeps the next request clean.
        return PlainTextResponse(text + "\n", status, headers={"Connection": "close", **(extra or {})})


def _peer(request: Request) -> str:
    return request.client.host if request.client else "client"
