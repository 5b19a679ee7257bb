"""One boto3 client factory (region, endpoint, no botocore retries) and AWS error classification by code."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import Field

from scaler.errors import PermanentError, ProviderError, TransientError
from scaler.yamlio import Strict

# Codes AWS uses for "slow down" or "try again". Matched exactly; message text is never read.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",  # Route 53: an earlier change to the zone is still being applied
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


@dataclass(frozen=True)
class AwsSettings:
    """Where AWS calls go. `endpoint_url` points every client at one endpoint (a moto server, a proxy)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None
    connect_timeout: float = 5.0  # seconds to open a connection
    read_timeout: float = 15.0  # seconds to wait for a response


class AwsSection(Strict):
    """The `aws` section of a config file: where AWS calls go."""

    region: str = Field("us-east-1", description="AWS region for runbook actions")
    endpoint_url: str | None = Field(None, description="One endpoint for all AWS clients (a test server)")
    profile: str | None = Field(None, description="Named profile for credentials; default chain when unset")
    def settings(self) -> AwsSettings:
        return AwsSettings(region=self.region, endpoint_url=self.endpoint_url, profile=self.profile)


CALL_TIMEOUTS = (1.0, 2.0, 3.0, 5.0, 10.0)
"""The shorter socket timeouts a call may get to fit a deadline (a client is kept per timeout used, so the set is
small): the longest of these that fits the time left, unless the settings' own timeout fits."""


def call_timeout(settings: AwsSettings, within: float | None) -> float:
    """The read timeout of a call that must end within `within` seconds (None: no deadline): the settings' own
    (15 s) if it fits, else the longest of CALL_TIMEOUTS that fits, and never below 1 s. 4.2 s left -> 3 s."""
    if within is None or within >= settings.read_timeout:
        return settings.read_timeout
    fitting = [t for t in CALL_TIMEOUTS if t <= within and t < settings.read_timeout]
    return max(fitting) if fitting else min(1.0, settings.read_timeout)


def client_config(settings: AwsSettings, timeout: float | None = None) -> Config:
    """botocore retries off (one HTTP send per call) so the caller's tenacity policy owns every retry.

    `total_max_attempts: 1` is the setting that really means one send; `max_attempts: 1` still retries once.
    `timeout` (a call_timeout) bounds both connecting and each read, so a region that takes connections and never
    answers costs a call that much, not the default 15 s.
    """
    read = settings.read_timeout if timeout is None else timeout
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=min(settings.connect_timeout, read),
        read_timeout=read,
    )


class AwsClients:
    """Creates each service's client once and hands the same one back (clients are thread-safe)."""

    def __init__(self, settings: AwsSettings | None = None) -> None:
        self.settings = settings or AwsSettings()
        self._clients: dict[tuple, Any] = {}
        self._hooks: list[tuple[str, str, str, Callable[..., Any]]] = []  # (service, region, event, handler)
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None

    def events(self, service: str, region: str | None = None) -> _Events:
        """Where to register a botocore event handler for `service` in `region` (default: the settings' region) so
        that it applies to every client of it: the one made already and each made later with a shorter timeout
        (client().meta.events reaches one client only). For instrumentation and fault injection."""
        return _Events(self, service, region or self.settings.region)

    def _register(self, service: str, region: str, event: str, handler: Callable[..., Any]) -> None:
        with self._lock:
            self._hooks.append((service, region, event, handler))
            for key, made in self._clients.items():
                if key[:2] == (service, region):
                    made.meta.events.register(event, handler)

    def client(self, service: str, region: str | None = None, *, within: float | None = None) -> Any:
        """The client for `service` in `region` (default: the settings' region), whose calls end within `within`
        seconds if given (see call_timeout; one client is kept per timeout)."""
        region = region or self.settings.region
        timeout = call_timeout(self.settings, within)
        key = (service, region) if timeout == self.settings.read_timeout else (service, region, timeout)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                # A boto3 Session is not thread-safe, so creating clients happens under the lock.
                if self._session is None:
                    self._session = boto3.session.Session(profile_name=self.settings.profile)
                found = self._session.client(
                    service,
                    region_name=region,
                    endpoint_url=self.settings.endpoint_url,
                    config=client_config(self.settings, timeout),
                )
                for hook_service, hook_region, event, handler in self._hooks:
                    if (hook_service, hook_region) == (service, region):
                        found.meta.events.register(event, handler)
                self._clients[key] = found
            return found


@dataclass(frozen=True)
class _Events:
    """AwsClients.events(): register(event, handler) on every client of one service in one region."""

    clients: AwsClients
    service: str
    region: str

    def register(self, event: str, handler: Callable[..., Any]) -> None:
        self.clients._register(self.service, self.region, event, handler)


def error_code(error: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def classify(error: BaseException, *, provider: str = "aws") -> ProviderError:
    """A botocore error as TransientError or PermanentError, decided by code and HTTP status only."""
    if isinstance(error, ClientError):
        code = error_code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        operation = getattr(error, "operation_name", "") or ""
        message = str(error.response.get("Error", {}).get("Message", ""))
        text = f"{provider} {operation}: {code or 'error'} (HTTP {status}) {message}".rstrip()
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientError(text, provider=provider, code=code)
        return PermanentError(text, provider=provider, code=code)
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return TransientError(
            f"{provider}: connection failed ({type(error).__name__})",
            provider=provider,
            code=type(error).__name__,
        )
    if isinstance(error, BotoCoreError):
        # Parameter validation, missing credentials, unknown region: retrying cannot help.
        return PermanentError(
            f"{provider}: {type(error).__name__}", provider=provider, code=type(error).__name__
        )
    return PermanentError(f"{provider}: {type(error).__name__}", provider=provider, code=type(error).__name__)
