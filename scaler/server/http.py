"""The HTTP face of scaler: /metrics, /healthz, /readyz and the bearer-token Alertmanager webhook, served by
uvicorn (h11) and starlette on a background thread, within the limits of `Limits`."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from scaler.errors import ScalerError
from scaler.server.protocol import GuardedH11
from scaler.server.webhook import REJECT_REASONS, Webhook, WebhookEndpoint, WebhookMetrics

__all__ = ["REJECT_REASONS", "Limits", "ReadyCheck", "Server", "Webhook", "WebhookMetrics"]

ReadyCheck = Callable[[], tuple[bool, str]]
"""Says whether the process can do its job now: (True, "ok") or (False, "why not")."""


@dataclass(frozen=True)
class Limits:
    """What a burst of alerts, or a client that misbehaves, may cost the server. Seconds and counts."""

    # Connections open at once; past it each request is answered 503 (Alertmanager retries) instead of the
    # connection being reset. An alert storm was 200 concurrent posts. Memory: a connection without the
    # token holds at most uvicorn's 64 KiB read-ahead (512 of them: 32 MiB); only a caller with the token
    # gets a body read, up to max_body_bytes.
    max_connections: int = 512
    # Connections the kernel queues before the server accepts them: a burst lands here (Linux caps it at
    # net.core.somaxconn, 4096 on current kernels). A backlog of 5 reset 167-182 of 200 simultaneous posts.
    backlog: int = 2048
    # A request's headers must arrive within this of the connection opening (or the previous response).
    header_timeout: float = 5.0
    # The webhook body must arrive within this once the headers are in: 1 MiB at 1 Mbit/s takes 8 s.
    body_timeout: float = 10.0
    # An idle keep-alive connection is closed after this.
    keep_alive: float = 5.0
    # Threads that parse, validate and dispatch webhook bodies; more requests wait for one, off the loop.
    dispatch_threads: int = 4
    # On stop(), requests in flight get this long to finish before they are cancelled.
    graceful_shutdown: float = 5.0


def _always_ready() -> tuple[bool, str]:
    return True, "ok"


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(text + "\n", status, headers=headers)


def _app(registry: CollectorRegistry, ready: ReadyCheck, endpoint: WebhookEndpoint | None,
         hook_path: str | None) -> Starlette:
    # Plain functions: starlette runs them on its own thread pool, so a slow collector or readiness check
    # never stalls the loop, and never waits behind webhook dispatch (which has a pool of its own).
    def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def healthz(_: Request) -> Response:
        return _text(HTTPStatus.OK, "ok")

    def readyz(_: Request) -> Response:
        ok, why = ready()
        return _text(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, why or ("ok" if ok else "not ready"))

    async def not_found(_: Request, __: Exception) -> Response:
        return _text(HTTPStatus.NOT_FOUND, "not found")

    async def wrong_method(_: Request, exc: Exception) -> Response:
        allow = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        return _text(HTTPStatus.METHOD_NOT_ALLOWED, f"use {allow}", {"Allow": allow})

    routes = [Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)]
    if endpoint is not None and hook_path is not None:
        routes.append(Route(hook_path, endpoint.handle, methods=["POST"]))
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: wrong_method})


PROBES = frozenset({"/healthz", "/readyz"})
"""Paths answered whatever the load: a kubelet that reads 503 on a liveness probe during an alert storm would
restart the server that was about to answer the storm."""


class _Capped:
    """The connection cap, checked per request as uvicorn's limit_concurrency is (connections open, requests in
    flight), but not for the probes: past it, 503 (Alertmanager retries) for everything else."""

    def __init__(self, app: Callable, limit: int) -> None:
        self.app, self.limit = app, limit
        self.state: uvicorn.server.ServerState | None = None  # the server's, set once it exists

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI's own three
        # uvicorn decides before this request's task exists; here it is one of the tasks, so more than `limit`
        state = self.state
        if state is not None and scope["type"] == "http" and scope["path"] not in PROBES and (
                len(state.connections) >= self.limit or len(state.tasks) > self.limit):
            await _text(HTTPStatus.SERVICE_UNAVAILABLE, "busy: too many connections, retry")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket, so the port is known and taken (or OSError raised) before start()."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, saying when it accepts connections."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.serving = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.serving.set()


class Server:
    """The HTTP server, bound at construction (port 0 picks a free one), run on a background thread.

    One thread runs the event loop, which only moves bytes; probes and /metrics run on starlette's thread
    pool, webhook bodies are parsed and dispatched on a pool of `limits.dispatch_threads`.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook: Webhook | None = None,
        ready: ReadyCheck | None = None,
        limits: Limits | None = None,
    ):
        self.registry = registry
        self.webhook = webhook
        self.ready: ReadyCheck = ready or _always_ready
        self.limits = limits = limits or Limits()
        self.metrics = WebhookMetrics(registry)
        self._sock = _listen(host, port, limits.backlog)
        self._address: tuple[str, int] = self._sock.getsockname()[:2]
        self._pool = ThreadPoolExecutor(max_workers=limits.dispatch_threads, thread_name_prefix="scaler-webhook")
        endpoint = None if webhook is None else WebhookEndpoint(webhook, self.metrics, self._pool, limits.body_timeout)
        app = _app(registry, lambda: self.ready(), endpoint, webhook.path if webhook else None)
        protocol = type("Protocol", (GuardedH11,), {"header_timeout": limits.header_timeout})
        capped = _Capped(app, limits.max_connections)
        config = uvicorn.Config(
            capped, http=protocol, ws="none", lifespan="off", interface="asgi3", loop="asyncio",
            # uvicorn's own logging: warnings and errors only ("Started server process" is not news in a
            # thread), no access log (a storm would write a line per alert), and no handlers of its own.
            log_config=None, log_level="warning", access_log=False,
            proxy_headers=False,  # nothing sits in front to vouch for X-Forwarded-For
            server_header=False, headers=[("Server", "scaler")],
            backlog=limits.backlog,  # the connection cap is _Capped's, which lets the probes through
            timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type] - a float works, the hint says int
            timeout_graceful_shutdown=limits.graceful_shutdown,  # type: ignore[arg-type]
        )
        self._uvicorn = _Uvicorn(config)
        capped.state = self._uvicorn.server_state  # the connections and requests uvicorn counts
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._address[0])

    @property
    def port(self) -> int:
        return int(self._address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Server:
        """Serve on a background thread; returns once connections are being accepted."""
        self._thread = threading.Thread(target=asyncio.run, args=(self._uvicorn.serve([self._sock]),),
                                        name="scaler-http", daemon=True)
        self._thread.start()
        while not self._uvicorn.serving.wait(0.05):
            if not self._thread.is_alive():
                self._thread = None
                raise ScalerError(f"the HTTP server on {self.url} failed to start (see the log)")
        return self

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish, close the socket. Safe to call twice."""
        if self._thread is not None:
            self._uvicorn.should_exit = True  # seen by uvicorn's loop within 0.1 s
            self._thread.join()
            self._thread = None
        self._sock.close()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
