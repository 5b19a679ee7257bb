"""The live metric source: one instant PromQL query per metric per tick, answered as {target: value}; and one range
query per metric, answered as {target: values}, for the history that fills the windows at start."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from pydantic import Field, field_validator, model_validator
from requests.auth import AuthBase, HTTPBasicAuth
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from scaler import secrets
from scaler.errors import ConfigError, PermanentError, Problem, TransientError
from scaler.sources.base import SourceConfig, SourceContext, range_grid
from scaler.units import PositiveSeconds, api_base
from scaler.yamlio import Strict

log = logging.getLogger(__name__)

PROVIDER = "prometheus"
MAX_RANGE_POINTS = 11_000
"""Points per series of one range query: Prometheus refuses more ("exceeded maximum resolution of 11,000 points
per timeseries"). A window's history fits: 10,000 slots at most, or two periods of seasonal buckets."""
MAX_ANSWER_BYTES = 128 * 2**20
"""The most bytes of one answer read (after decompression): 10,000 targets x a day of 5-minute buckets is about
150 MB of JSON; more is refused while it is read, before it is parsed, so a query answered with every pod's
series, or a compressed answer that unpacks to gigabytes, costs 128 MiB at most."""
MAX_RANGE_SERIES = 10_000
"""Series one range query may answer with: a policy's targets (a recording's limit too); more is a query not
aggregated by the target label, whose answer would be one series per pod."""
SECTION = "prometheus"  # where this config sits in the controller config; ConfigError paths start with it
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class BasicAuth(Strict):
    """HTTP basic auth; the password comes from the environment or a file, never the config itself."""

    username: str = Field(min_length=1, description="User name sent with every query")
    password_env: str | None = Field(
        None, pattern=_ENV_NAME, description="Name of the environment variable holding the password"
    )
    password_file: Path | None = Field(
        None, description="File holding the password (trailing newline ignored); relative to the config file"
    )

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        secrets.one_place(self, "password")
        return self


class PrometheusConfig(SourceConfig):
    """Where Prometheus (or a Prometheus-compatible API: Mimir, Cortex, Thanos) answers and how to reach it."""

    kind: Literal["prometheus"] = Field(
        "prometheus", description="The Prometheus HTTP API (the default: the section may leave it out)"
    )
    url: str = Field(
        description="Base URL of the HTTP API, without /api/v1, e.g. http://prometheus:9090 or "
        "https://mimir.example/prometheus"
    )
    timeout: PositiveSeconds = Field(
        5.0,
        description="Seconds to wait for a connection, and then for each read of the answer, per query "
        "(one attempt, no retries)",
    )
    stale_after: PositiveSeconds = Field(
        120.0,
        description="Seconds: a range-selector query's series whose newest sample is older than this at "
        "query time counts as no data",
    )
    bearer_token_env: str | None = Field(
        None, pattern=_ENV_NAME, description="Name of the environment variable holding a bearer token"
    )
    bearer_token_file: Path | None = Field(
        None,
        description="File holding a bearer token (trailing newline ignored); relative to the config file",
    )
    basic_auth: BasicAuth | None = Field(None, description="HTTP basic auth instead of a bearer token")
    ca_file: Path | None = Field(
        None, description="PEM bundle of the CAs that sign the server's certificate (https only)"
    )
    insecure_skip_verify: bool = Field(
        False, description="Accept any server certificate (https only); for tests, never production"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers on every query, e.g. X-Scope-OrgID for Mimir"
    )

    @field_validator("url")
    @classmethod
    def _api_base(cls, url: str) -> str:
        return api_base(url)

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, headers: dict[str, str]) -> dict[str, str]:
        if any(name.lower() == "authorization" for name in headers):
            raise ValueError("set credentials with bearer_token_env, bearer_token_file or basic_auth, whose "
                             "secrets stay out of the config file")
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusConfig:
        ways = [
            name
            for name, value in (
                ("bearer_token_env", self.bearer_token_env),
                ("bearer_token_file", self.bearer_token_file),
                ("basic_auth", self.basic_auth),
            )
            if value is not None
        ]
        if len(ways) > 1:
            raise ValueError(f"set at most one of bearer_token_env, bearer_token_file, basic_auth (got "
                             f"{', '.join(ways)})")
        if self.ca_file is not None and self.insecure_skip_verify:
            raise ValueError("ca_file and insecure_skip_verify contradict each other; set one")
        if not self.url.startswith("https://") and (self.ca_file is not None or self.insecure_skip_verify):
            raise ValueError("ca_file and insecure_skip_verify only apply to an https:// URL")
        return self

    def build(self, ctx: SourceContext) -> PrometheusSource:
        return PrometheusSource(self, base_dir=ctx.base_dir)


class PrometheusSource:
    """MetricSource over the Prometheus HTTP API: one request per query, errors marked transient/permanent.

    Secrets are read once, here; they live only in the requests auth object, never in repr, logs or errors.
    """

    def __init__(self, config: PrometheusConfig, *, base_dir: Path | None = None):
        self.config = config
        self.url = config.url
        self.queries = 0  # every call to query(), answered or not: the loop checks one per metric per tick
        self.range_queries = 0  # every call to query_range(): one per metric when a policy's state is loaded
        auth, self._secrets, ca_file = _credentials(config, base_dir)
        session = requests.Session()
        session.verify = str(ca_file) if ca_file is not None else not config.insecure_skip_verify
        # PrometheusConnect raises a bare exception carrying the status only as text; the hook keeps the
        # response so a refusal is classified by its status code, never by its message
        self._answer = threading.local()
        session.hooks["response"].append(self._keep)
        self._client = PrometheusConnect(
            url=config.url,
            headers=dict(config.headers) or None,
            # total=0: one attempt. The client's default (3 retries, backoff 1 s) costs ~6 s against a dead
            # server, and retries belong to the caller's policy. read=False: a read timeout or reset reaches
            # requests as itself (ReadTimeout), not wrapped in "max retries exceeded" as a ConnectionError.
            # raise_on_status=False: a 503 or 429 with Retry-After still comes back as a response (not a
            # RetryError) and without waiting for it.
            retry=Retry(total=0, read=False, raise_on_status=False),
            auth=auth,
            session=session,
            timeout=config.timeout,  # 0.7.2 passes it to every request it sends
        )

    def __repr__(self) -> str:
        auth = "bearer" if self._bearer() else "basic" if self.config.basic_auth else "none"
        return f"PrometheusSource(url={self.url!r}, auth={auth})"

    def close(self) -> None:
        """Release the pooled connections."""
        self._client.close()

    def query(self, promql: str, *, by: str, now: float) -> dict[str, float]:
        """{value of label `by`: value} of the instant query `promql` evaluated at `now` (unix seconds)."""
        self.queries += 1
        result = self._ask(promql, lambda: self._client.custom_query(promql, params={"time": f"{now:.3f}"}))
        kind = self._result_type(promql)
        if kind == "vector":
            values = self._vector(result, promql, by)
        elif kind == "matrix":
            values = self._newest(result, promql, by, now)
        else:
            raise PermanentError(
                self._say(f"query {promql!r} returned a {kind}; it must return a vector with label {by!r}, "
                          f"e.g. avg by ({by}) (...)"),
                provider=PROVIDER,
                code="not-a-vector",
            )
        log.debug("%s: %r at %.3f: %d of %d series", self.url, promql, now, len(values), len(result))
        return values

    def query_range(self, promql: str, *, by: str, start: float, end: float, step: float) -> dict[str, np.ndarray]:
        """{value of label `by`: values on range_grid(start, end, step)} of `promql` evaluated every `step`
        seconds from `start` to `end` (unix seconds, sent whole), NaN where a series has no finite value.

        Bounded before anything is sent: at most MAX_RANGE_POINTS points per series (Prometheus's own limit);
        and after: at most MAX_RANGE_SERIES series in the answer (a query not aggregated by the target label).
        Both are PermanentErrors, as are a non-matrix answer and two series with the same label value."""
        self.range_queries += 1
        try:
            grid = range_grid(start, end, step)
        except ValueError as e:
            raise PermanentError(self._say(f"range query {promql!r}: {e}"), provider=PROVIDER, code="bad-range") from e
        if grid.size > MAX_RANGE_POINTS:
            raise PermanentError(
                self._say(f"range query {promql!r}: {grid.size:,} points per series (every {step:g} s), more than "
                          f"{MAX_RANGE_POINTS:,}"),
                provider=PROVIDER,
                code="too-many-points",
            )
        first, last = (datetime.fromtimestamp(float(t), UTC) for t in (grid[0], grid[-1]))
        result = self._ask(promql, lambda: self._client.custom_query_range(promql, first, last, f"{step:g}"))
        kind = self._result_type(promql)
        if kind != "matrix":
            raise PermanentError(self._say(f"range query {promql!r} returned a {kind}, not a matrix"),
                                 provider=PROVIDER, code="not-a-matrix")
        if len(result) > MAX_RANGE_SERIES:
            raise PermanentError(
                self._say(f"range query {promql!r} returned {len(result):,} series, more than {MAX_RANGE_SERIES:,}; "
                          f"aggregate it by ({by})"),
                provider=PROVIDER,
                code="too-many-series",
            )
        out: dict[str, np.ndarray] = {}
        for series in result:
            key = series.get("metric", {}).get(by)
            if key is None:
                continue
            samples = self._samples(series, "values", promql)
            if not isinstance(samples, list):
                raise self._garbled(promql)
            values = np.full(grid.size, np.nan)
            for sample in samples:
                try:
                    k = round((float(sample[0]) - grid[0]) / step)
                except (TypeError, ValueError, IndexError, OverflowError) as e:  # OverflowError: a time of Infinity
                    raise self._garbled(promql) from e
                if 0 <= k < grid.size:
                    values[k] = self._float(sample, promql)
            values[~np.isfinite(values)] = np.nan
            if key in out:
                # one target's series under two label sets, one after the other (a renamed recording rule): the
                # answer is both joined; at the same instant they would be two answers for one target
                seen = out[key]
                both = ~np.isnan(seen) & ~np.isnan(values)
                if both.any():
                    self._once(out, key, promql, by)
                values = np.where(np.isnan(seen), values, seen)
            out[key] = values
        log.debug("%s: %r from %.0f to %.0f every %g s: %d of %d series", self.url, promql, grid[0], grid[-1], step,
                  len(out), len(result))
        return out

    def _ask(self, promql: str, call: Callable[[], Any]) -> Any:
        """call()'s answer (one request), or the project error for how it failed."""
        self._answer.response = None
        try:
            return call()
        except PrometheusApiClientException as e:
            raise self._refused(self._answer.response, promql) from e
        except _TooLarge as e:
            raise PermanentError(
                self._say(f"query {promql!r}: the answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB; aggregate "
                          "it by the target label, or ask for less history"),
                provider=PROVIDER,
                code="too-large",
            ) from e
        except requests.exceptions.SSLError as e:
            # a certificate that does not verify, or TLS spoken to a plain HTTP port: retrying cannot help
            raise PermanentError(self._say(f"TLS failed: {_reason(e)}"), provider=PROVIDER, code="tls") from e
        except requests.Timeout as e:
            raise TransientError(
                self._say(f"no answer within {self.config.timeout:g} s"), provider=PROVIDER, code="timeout"
            ) from e
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            # refused, reset, or cut off mid-answer
            raise TransientError(
                self._say(f"connection failed: {_reason(e)}"), provider=PROVIDER, code="connection"
            ) from e
        except (ValueError, KeyError, TypeError) as e:
            # a 200 that is not {"data": {"result": ...}}: a login page or proxy answered, not Prometheus
            # (before RequestException: requests' JSONDecodeError is both)
            raise PermanentError(
                self._say("the answer is not a Prometheus API response"), provider=PROVIDER, code="not-prometheus"
            ) from e
        except requests.RequestException as e:
            raise PermanentError(
                self._say(f"{type(e).__name__}: {_reason(e)}"), provider=PROVIDER, code=type(e).__name__
            ) from e

    def _vector(self, result: list[dict[str, Any]], promql: str, by: str) -> dict[str, float]:
        present: dict[str, float] = {}
        for series in result:
            key = series.get("metric", {}).get(by)
            if key is None:
                continue
            self._once(present, key, promql, by)
            present[key] = self._float(self._samples(series, "value", promql), promql)
        return {key: value for key, value in present.items() if math.isfinite(value)}

    def _newest(self, result: list[dict[str, Any]], promql: str, by: str, now: float) -> dict[str, float]:
        """A range selector's answer: each series' last sample, if it is recent enough to stand for `now`."""
        oldest = now - self.config.stale_after
        present: dict[str, float] = {}
        for series in result:
            key = series.get("metric", {}).get(by)
            if key is None:
                continue
            samples = self._samples(series, "values", promql)
            if not samples:
                continue
            newest = samples[-1]  # the API lists samples oldest first
            try:
                stamp = float(newest[0])
            except (TypeError, ValueError, IndexError) as e:
                raise self._garbled(promql) from e
            # a series that stopped reporting (a pod gone, a renamed recording rule) is absent, not a clash:
            # with the default 120 s, a sample from 90 s before `now` counts, one from 10 min before does not
            if stamp < oldest:
                continue
            self._once(present, key, promql, by)
            present[key] = self._float(newest, promql)
        return {key: value for key, value in present.items() if math.isfinite(value)}

    def _once(self, present: dict[str, Any], key: str, promql: str, by: str) -> None:
        if key in present:
            raise PermanentError(
                self._say(f"query {promql!r} returned more than one series with {by}={key!r}; aggregate it "
                          f"by ({by}), e.g. avg by ({by}) (...)"),
                provider=PROVIDER,
                code="duplicate-label",
            )

    def _samples(self, series: dict[str, Any], field: str, promql: str) -> Any:
        """series["value"] ([t, "v"]) or series["values"] ([[t, "v"], ...])."""
        if field not in series:
            # native histograms come as "histogram"/"histograms" instead
            raise PermanentError(
                self._say(f"query {promql!r} returned a series without float samples (a native histogram?); "
                          "reduce it to a number, e.g. with histogram_quantile"),
                provider=PROVIDER,
                code="not-a-float",
            )
        return series[field]

    def _float(self, sample: Any, promql: str) -> float:
        try:
            return float(sample[1])  # the API sends values as strings: "0.5", "NaN", "+Inf"
        except (TypeError, ValueError, IndexError) as e:
            raise self._garbled(promql) from e

    def _result_type(self, promql: str) -> str:
        """"vector", "matrix", "scalar" or "string": the client returns only `result`, so read it here."""
        try:
            return str(self._answer.response.json()["data"]["resultType"])
        except (AttributeError, ValueError, KeyError, TypeError) as e:
            raise self._garbled(promql) from e

    def _refused(self, response: requests.Response | None, promql: str) -> Exception:
        """The project error for a non-200 answer, chosen by its HTTP status alone."""
        status = response.status_code if response is not None else 0
        detail = f"HTTP {status}"
        if response is not None:
            try:
                body = response.json()
                detail += f": {body.get('errorType', '')}: {body.get('error', '')}"
            except (ValueError, AttributeError):
                text = response.text.strip()[:200]
                detail += f": {text}" if text else ""
        if status >= 500 or status in (408, 429):
            return TransientError(self._say(detail), provider=PROVIDER, code=str(status))
        # 400 bad_data (a PromQL syntax error), 422 execution, 401/403 (credentials), 404 (wrong URL)
        return PermanentError(self._say(f"{detail} (query {promql!r})"), provider=PROVIDER, code=str(status))

    def _garbled(self, promql: str) -> PermanentError:
        return PermanentError(
            self._say(f"the answer to {promql!r} is not a Prometheus API response"),
            provider=PROVIDER,
            code="not-prometheus",
        )

    def _say(self, message: str) -> str:
        """`url: message`, with any secret blanked out in case a server or library echoed it back."""
        text = f"{self.url}: {message}"
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def _keep(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Keep the response, its body read here, at most MAX_ANSWER_BYTES of it (requests reads the body after
        its response hooks; a body already read is not read again)."""
        self._answer.response = response
        body = bytearray()
        for chunk in response.iter_content(chunk_size=1 << 16):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                response.close()
                raise _TooLarge
        response._content = bytes(body)

    def _bearer(self) -> bool:
        return self.config.bearer_token_env is not None or self.config.bearer_token_file is not None


class _TooLarge(Exception):
    """An answer past MAX_ANSWER_BYTES, raised while it is read (scaler.sources.prometheus.PrometheusSource._keep)."""


class _Bearer(AuthBase):
    """Sets `Authorization: Bearer <token>` on each request. As an auth object (not a plain header) it also
    keeps requests from overriding it with ~/.netrc, and from forwarding it on a redirect to another host."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(<redacted>)"


def _credentials(config: PrometheusConfig, base_dir: Path | None) -> tuple[AuthBase | None, list[str], Path | None]:
    """(auth for requests, the secret strings, resolved ca_file); ConfigError listing every problem."""
    problems: list[Problem] = []

    def at(path: Path) -> Path:
        return path if path.is_absolute() or base_dir is None else base_dir / path

    def secret(field: str, env: str | None, file: Path | None) -> str | None:
        if env is None and file is None:
            return None
        try:
            return secrets.read(env=env, file=file, base=base_dir)
        except secrets.SecretUnavailable as e:
            problems.append(Problem(f"{SECTION}.{field}", str(e)))
            return None

    token = secret(
        "bearer_token_env" if config.bearer_token_env else "bearer_token_file",
        config.bearer_token_env,
        config.bearer_token_file,
    )
    basic = config.basic_auth
    password = (
        secret(
            "basic_auth.password_env" if basic.password_env else "basic_auth.password_file",
            basic.password_env,
            basic.password_file,
        )
        if basic is not None
        else None
    )
    ca_file = at(config.ca_file) if config.ca_file is not None else None
    if ca_file is not None and not (ca_file.is_file() and os.access(ca_file, os.R_OK)):
        problems.append(Problem(f"{SECTION}.ca_file", f"cannot read {ca_file}"))
    if problems:
        raise ConfigError("metric source", problems)
    if token is not None:
        return _Bearer(token), [token], ca_file
    if basic is not None and password is not None:
        return HTTPBasicAuth(basic.username, password), [password], ca_file
    return None, [], ca_file


def _reason(error: BaseException) -> str:
    """The innermost cause's text ("[Errno 111] Connection refused", "certificate verify failed: ...").

    requests wraps urllib3's MaxRetryError, which wraps the socket or TLS error; the outer texts only say
    "Max retries exceeded", which with one attempt would mislead.
    """
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MaxRetryError) and error.reason is not None:
            error = error.reason
        elif any(isinstance(arg, BaseException) for arg in error.args):
            # ConnectionError(MaxRetryError(...)), ProtocolError("Connection aborted.", ConnectionResetError())
            error = next(arg for arg in error.args if isinstance(arg, BaseException))
        elif error.__cause__ is not None:
            error = error.__cause__
        else:
            break
    return str(error) or type(error).__name__
