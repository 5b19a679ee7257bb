"""The ActionContext given to each action: audited, retried AWS and HTTP calls, memo, tokens, sleep."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scaler import retry
from scaler.aws import AwsClients, classify
from scaler.clock import Clock
from scaler.errors import PermanentError, ScalerError, TransientError
from scaler.runbook.actions.base import HttpResponse
from scaler.runbook.audit import AuditLog
from scaler.runbook.errors import StepTimeout
from scaler.runbook.journal import Journal
from scaler.runbook.redact import Redactor
from scaler.units import format_duration

log = logging.getLogger("scaler.runbook")

REGIONLESS = ("http", "kubernetes")  # audited calls that are not made in an AWS region
_TOKENS = uuid.UUID("6c1f3e2a-8d0b-4f57-9a51-2f4b7c0d9e13")  # namespace for client tokens

# Redirects one request follows at most (urllib's own bound, kept): the 11th is not followed.
MAX_REDIRECTS = 10
# Headers that carry a credential: a request with any of them is "authenticated".
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """scheme://host:port, the unit credentials belong to (as browsers define an origin; default port filled)."""
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number: an origin of its own, equal to no other
        port = parts.netloc.rpartition(":")[2]
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, bounded, that never carries credentials to another origin.

    An authenticated request follows redirects within its origin (an /auth -> /auth/ redirect keeps
    working) but stops at one to another origin instead of following it without the credentials: the
    answer from elsewhere would not tell whether the credential works (a login page answers 200 to
    anyone), and urllib itself would forward the Authorization header there. `stopped` says why a
    redirect was not followed; the caller turns it into the error.
    """

    # urllib gives up by raising an HTTPError that reads like the server's own 3xx; the count below
    # stops first, with a reason of our own.
    max_redirections = max_repeats = MAX_REDIRECTS + 1

    def __init__(self) -> None:
        super().__init__()
        self.followed = 0
        self.stopped: str | None = None
        self.code = ""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        here, there = origin(req.full_url), origin(newurl)
        sent = sorted(k for k, _ in req.header_items() if k.lower() in CREDENTIAL_HEADERS)
        if there != here and sent:
            return self._stop(
                "CrossOriginRedirect",
                f"redirect ({code}) to another origin ({there}) not followed: the request carries "
                f"credentials ({', '.join(sent)}), which are only sent to {here}",
            )
        if urllib.parse.urlsplit(newurl).scheme.lower() not in _DEFAULT_PORTS:
            return self._stop("BadRedirect", f"redirect ({code}) to a non-HTTP URL not followed")
        if self.followed >= MAX_REDIRECTS:
            return self._stop(
                "TooManyRedirects", f"redirect ({code}) not followed: more than {MAX_REDIRECTS} redirects"
            )
        self.followed += 1
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def _stop(self, code: str, why: str) -> None:
        self.code, self.stopped = code, why
        return None


@dataclass(frozen=True)
class Env:
    """Everything outside the run itself that a run uses."""

    journal: Journal
    audit: AuditLog
    clients: AwsClients
    clock: Clock
    http_timeout: float


class StepContext:
    """One step (or its verify / compensation / a precondition) at one attempt."""

    def __init__(
        self,
        *,
        env: Env,
        run_id: str,
        step_id: str,
        phase: str,
        attempt: int,
        deadline: float,
        region: str | None,
        redactor: Redactor,
        call_policy: retry.RetryPolicy,
        persist_memo: bool = True,
    ) -> None:
        self.env = env
        self.run_id = run_id
        self.step_id = step_id
        self.phase = phase  # run | verify | compensate | check
        self.attempt = attempt
        self.deadline = deadline
        self.region = region
        self.clock = env.clock
        self.redactor = redactor
        self.call_policy = call_policy
        self.persist_memo = persist_memo

    # -- audit --------------------------------------------------------------------------------------

    def _audit(self, service: str, operation: str, args: Mapping[str, Any], try_no: int, **outcome: Any) -> None:
        self.env.audit.write(
            "call",
            redactor=self.redactor,
            run_id=self.run_id,
            step=self.step_id,
            phase=self.phase,
            region=(self.region or self.env.clients.settings.region) if service not in REGIONLESS else None,
            service=service,
            operation=operation,
            args=dict(args),
            attempt=try_no,
            **outcome,
        )

    def _retrying(self, fn: Callable[[], Any], what: str) -> Any:
        def note(n: int, error: BaseException, delay: float) -> None:
            log.info(
                "%s",
                self.redactor.text(
                    f"run {self.run_id} step {self.step_id}: {what} try {n} failed ({error}); retrying in {delay:.2f}s"
                ),
            )

        return retry.call(
            fn,
            policy=self.call_policy,
            sleep=self.clock.sleep,
            deadline=self.deadline,
            now=self.clock.now,
            on_retry=note,
        )

    # -- ActionContext ------------------------------------------------------------------------------

    def aws(self, service: str, operation: str, /, **args: Any) -> dict[str, Any]:
        if getattr(self.env.clients.client(service, self.region), operation, None) is None:
            raise PermanentError(f"{service} has no operation {operation}", provider=service, code="UnknownOperation")
        tries = 0

        def once() -> dict[str, Any]:
            nonlocal tries
            tries += 1
            # Each try's client times out within the step's time left: a region that takes connections and never
            # answers costs a best-effort step its deadline, not botocore's 15 s per call.
            client = self.env.clients.client(service, self.region, within=self.deadline - self.clock.now())
            try:
                result = getattr(client, operation)(**args)
            except Exception as e:  # botocore raises many types; classify() sorts them by code
                err = classify(e, provider=service)
                self._audit(
                    service,
                    operation,
                    args,
                    tries,
                    error={"code": err.code, "transient": err.transient, "message": str(err)},
                )
                raise err from e
            self._audit(
                service,
                operation,
                args,
                tries,
                result={k: v for k, v in result.items() if k != "ResponseMetadata"},
            )
            return result

        return self._retrying(once, f"{service}.{operation}")

    def call(
        self,
        service: str,
        operation: str,
        fn: Callable[[], Any],
        /,
        *,
        args: Mapping[str, Any],
        classify: Callable[[Exception], ScalerError],
        describe: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> Any:
        tries = 0

        def once() -> Any:
            nonlocal tries
            tries += 1
            try:
                answer = fn()
            except Exception as e:  # what the provider's client raises; `classify` sorts it
                err = classify(e)
                self._audit(service, operation, args, tries,
                            error={"code": err.code, "transient": err.transient, "message": str(err)})
                raise err from e
            self._audit(service, operation, args, tries, result=dict(describe(answer)) if describe else {})
            return answer

        return self._retrying(once, f"{service} {operation}")

    def http(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        check: bool = True,
        retry: bool = True,
    ) -> HttpResponse:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            # urllib would also open file:// and ftp:// URLs; a runbook parameter must not read local files.
            raise PermanentError(
                f"http {method}: only http and https URLs are allowed", provider="http", code="BadScheme"
            )
        tries = 0

        def once() -> HttpResponse:
            nonlocal tries
            tries += 1
            data = None if body is None else json.dumps(body).encode("utf-8")
            hdrs = {"Content-Type": "application/json", "User-Agent": "scaler-runbook"} | dict(headers or {})
            request = urllib.request.Request(url, data=data, method=method, headers=hdrs)
            timeout = max(0.1, min(self.env.http_timeout, self.deadline - self.clock.now()))
            redirects = _Redirects()
            try:
                with urllib.request.build_opener(redirects).open(request, timeout=timeout) as answer:
                    got = HttpResponse(status=answer.status, body=answer.read())
            except urllib.error.HTTPError as e:
                got = HttpResponse(status=e.code, body=e.read() or b"")
            except (urllib.error.URLError, OSError) as e:
                # No answer at all (refused, reset, timed out): worth another try.
                self._audit("http", method, {"url": url}, tries, error={"code": type(e).__name__, "transient": True})
                raise TransientError(
                    f"http {method}: no answer ({type(e).__name__})", provider="http", code=type(e).__name__
                ) from None
            self._audit("http", method, {"url": url}, tries, result={"status": got.status})
            if redirects.stopped is not None:
                # Even for an unchecked call: a 3xx we chose not to follow is not the server's last word.
                raise PermanentError(f"http {method}: {redirects.stopped}", provider="http", code=redirects.code)
            if check and not 200 <= got.status < 300:
                kind = TransientError if got.status >= 500 or got.status == 429 else PermanentError
                raise kind(f"http {method}: status {got.status}", provider="http", code=str(got.status))
            return got

        return self._retrying(once, f"http {method}") if retry else once()

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        full = key if self.phase == "run" else f"{self.phase}:{key}"
        if not self.persist_memo:
            return compute()
        stored = self.env.journal.memo(self.run_id, self.step_id)
        if full in stored:
            return stored[full]
        value = compute()
        self.env.journal.remember(self.run_id, self.step_id, full, value)
        return value

    def token(self, *parts: str) -> str:
        return str(uuid.uuid5(_TOKENS, "/".join([self.run_id, self.step_id, self.phase, *parts])))

    def secret(self, value: str) -> None:
        self.redactor.add(value)

    def sleep(self, seconds: float) -> None:
        if self.clock.now() + seconds > self.deadline:
            left = max(0.0, self.deadline - self.clock.now())
            raise StepTimeout(
                f"step {self.step_id}: timeout reached (a {format_duration(seconds)} wait, "
                f"{format_duration(round(left, 3))} left)"
            )
        self.clock.sleep(seconds)

    def log(self, message: str) -> None:
        log.info("%s", self.redactor.text(f"run {self.run_id} step {self.step_id}: {message}"))
