"""Redirects and credentials: a request with credentials never follows a redirect to another origin."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scaler import retry
from scaler.aws import AwsClients
from scaler.clock import FakeClock
from scaler.errors import PermanentError
from scaler.runbook.audit import AuditLog
from scaler.runbook.context import MAX_REDIRECTS, Env, StepContext
from scaler.runbook.journal import Journal
from scaler.runbook.records import RunRecord
from scaler.runbook.redact import Redactor
from scaler.runbook.service import RunbookService, Trigger
from tests.runbook.helpers import ClientFor, World, current_secret, world_of

WHO = Trigger(kind="manual", who="sec", why="rotation drill")
REDIRECTS = [301, 302, 303, 307, 308]

secrets_world = world_of("secrets")


@dataclass
class Origin:
    """A local HTTP server. `routes` maps a path to (status, Location or None); other paths answer 200.
    Every request is kept as (method, path, Authorization, Cookie)."""

    url: str = ""
    routes: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    seen: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                if size:
                    self.rfile.read(size)
                with origin.lock:
                    origin.seen.append((self.command, self.path, self.headers.get("Authorization"),
                                        self.headers.get("Cookie")))
                    status, location = origin.routes.get(self.path, (200, None))
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = answer  # noqa: N815 (http.server's naming)

        return Handler

    def authorized(self) -> list[str]:
        """Paths that arrived with credentials."""
        return [path for _, path, auth, cookie in self.seen if auth or cookie]


@contextmanager
def origin_server() -> Iterator[Origin]:
    origin = Origin()
    server = ThreadingHTTPServer(("127.0.0.1", 0), origin.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    origin.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def first() -> Iterator[Origin]:
    with origin_server() as o:
        yield o


@pytest.fixture
def second() -> Iterator[Origin]:
    with origin_server() as o:
        yield o


def rotate(service: RunbookService, test_url: str) -> RunRecord:
    return service.start("rotate-secret", {"secret_id": "prod/db", "apply_to_parameter": "/app/db",
                                           "test_url": test_url}, trigger=WHO)


# -- the rotation's testSecret: the new value is the credential --------------------------------------------


@pytest.mark.parametrize("code", REDIRECTS, ids=[str(c) for c in REDIRECTS])
def test_rotation_does_not_send_the_new_secret_to_another_origin(
    service: RunbookService, mocked: ClientFor, secrets_world: World, first: Origin, second: Origin, code: int
) -> None:
    before = current_secret(mocked, "prod/db")
    first.routes["/auth"] = (code, f"{second.url}/collect?from=scaler")
    run = rotate(service, f"{first.url}/auth")

    assert second.seen == []  # not one request, so certainly no Authorization header
    assert first.authorized() == ["/auth"]  # the new value went only where it was meant to go
    # testSecret failed, so the rotation was undone: the old value is current again, the service's copy too.
    assert run.status == "rolled_back"
    assert f"redirect ({code}) to another origin ({second.url})" in str(run.error)
    assert "not followed" in str(run.error)
    assert current_secret(mocked, "prod/db") == before
    assert mocked("ssm", "us-east-1").get_parameter(Name="/app/db", WithDecryption=True)["Parameter"]["Value"] \
        == before[1]


def test_a_host_name_for_the_same_address_is_another_origin(
    service: RunbookService, mocked: ClientFor, secrets_world: World, first: Origin
) -> None:
    # Same address and port, other host name: the origin is (scheme, host, port), as browsers define it.
    elsewhere = first.url.replace("127.0.0.1", "localhost")
    first.routes["/auth"] = (302, f"{elsewhere}/other")
    run = rotate(service, f"{first.url}/auth")
    assert first.authorized() == ["/auth"] and [p for _, p, _, _ in first.seen] == ["/auth"]
    assert run.status == "rolled_back" and f"another origin ({elsewhere})" in str(run.error)


def test_a_redirect_within_the_origin_is_followed_with_the_credentials(
    service: RunbookService, mocked: ClientFor, secrets_world: World, first: Origin
) -> None:
    first.routes["/auth"] = (301, "/auth/")  # the usual trailing-slash redirect, relative
    first.routes["/auth/"] = (307, f"{first.url}/auth/v2")
    run = rotate(service, f"{first.url}/auth")
    assert run.status == "succeeded", run.error
    version, value = current_secret(mocked, "prod/db")
    assert version == run.steps[0].outputs["rotated"][0]["version_id"]
    assert [(p, a) for _, p, a, _ in first.seen] == [(p, f"Bearer {value}") for p in ("/auth", "/auth/", "/auth/v2")]


def test_redirects_within_the_origin_are_bounded(
    service: RunbookService, mocked: ClientFor, secrets_world: World, first: Origin
) -> None:
    for i in range(2 * MAX_REDIRECTS):
        first.routes[f"/hop{i}"] = (302, f"/hop{i + 1}")
    run = rotate(service, f"{first.url}/hop0")
    assert run.status == "rolled_back"
    assert f"not followed: more than {MAX_REDIRECTS} redirects" in str(run.error)
    # The first request and MAX_REDIRECTS redirects; a permanent error, so the step is not tried again.
    assert [p for _, p, _, _ in first.seen] == [f"/hop{i}" for i in range(MAX_REDIRECTS + 1)]


# -- the context's http() itself ------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    clock = FakeClock()
    env = Env(journal=Journal(tmp_path / "journal.db"), audit=AuditLog(tmp_path / "audit.jsonl", clock=clock),
              clients=AwsClients(None), clock=clock, http_timeout=2.0)
    return StepContext(env=env, run_id="r", step_id="s", phase="run", attempt=1, deadline=clock.now() + 60,
                       region=None, redactor=Redactor([]), call_policy=retry.RetryPolicy(attempts=1))


@pytest.mark.parametrize("header", ["Authorization", "Cookie", "Proxy-Authorization"])
@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
def test_no_credential_header_crosses_origins(ctx: StepContext, first: Origin, second: Origin, header: str,
                                              check: bool) -> None:
    first.routes["/x"] = (302, f"{second.url}/y")
    with pytest.raises(PermanentError, match="not followed") as raised:
        ctx.http("GET", f"{first.url}/x", headers={header: "secret-credential-value"}, check=check)
    assert raised.value.code == "CrossOriginRedirect"
    assert "secret-credential-value" not in str(raised.value) and "/y" not in str(raised.value)
    assert second.seen == []


def test_a_request_without_credentials_still_follows_redirects_anywhere(ctx: StepContext, first: Origin,
                                                                        second: Origin) -> None:
    first.routes["/health"] = (302, f"{second.url}/health")
    assert ctx.http("GET", f"{first.url}/health", check=False).status == 200
    assert [p for _, p, _, _ in second.seen] == ["/health"]


def test_a_redirect_loop_is_stopped_by_the_same_bound(ctx: StepContext, first: Origin) -> None:
    first.routes["/loop"] = (302, "/loop")
    with pytest.raises(PermanentError, match=f"more than {MAX_REDIRECTS} redirects") as raised:
        ctx.http("GET", f"{first.url}/loop", check=False)
    assert raised.value.code == "TooManyRedirects" and len(first.seen) == MAX_REDIRECTS + 1
