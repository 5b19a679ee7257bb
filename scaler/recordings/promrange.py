"""Recorded metrics from a live Prometheus: a range query per metric, fetched in chunks, errors classified."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from scaler.errors import DataError, PermanentError, Problem, TransientError
from scaler.recordings.model import MAX_CELLS, MAX_SERIES, Recording, merge, require_metrics
from scaler.recordings.promjson import parse_matrix

MAX_POINTS = 11_000
"""Prometheus rejects a range query whose series would have more points than this ("exceeded maximum
resolution of 11,000 points per timeseries"): two days at a 15 s step is 11,521 points, so two requests."""

PROVIDER = "prometheus"


def load_prometheus_range(
    url: str,
    queries: Mapping[str, str],
    *,
    start: float,
    end: float,
    step: float,
    target_label: str | None = None,
    timeout: float = 30,
    headers: Mapping[str, str] | None = None,
) -> Recording:
    """Fetch `queries` ({metric name: PromQL}) over [start, end] every `step` seconds as one Recording.

    Each query should be aggregated by the label that names targets (`avg by (service) (...)`), so each of
    its series is one target; targets are named as in load_prometheus_json, and every query must return the
    same targets. The key "replicas" fills Recording.replicas. Long ranges are fetched in several requests
    of at most MAX_POINTS points, on the one grid start + k*step, so the pieces join without overlap.

    The client's built-in retries (3 tries with backoff, ~6 s against a dead server) are switched off: this
    call fails fast and says why, and whoever calls it owns the retry policy. A query Prometheus rejects is
    a DataError; a refused connection, a timeout, 5xx or 429 is a TransientError; any other refusal (401,
    403, 404, a server that does not answer like Prometheus) is a PermanentError.
    """
    if not queries:
        raise DataError(url, "no queries to fetch")
    if not (step > 0 and end >= start and all(map(math.isfinite, (start, end, step)))):
        raise DataError(url, f"need step > 0 and end >= start (got start={start}, end={end}, step={step})")
    if len(queries) > MAX_SERIES:
        raise DataError(url, f"{len(queries)} queries, more than the limit of {MAX_SERIES} metrics and replicas")
    points = int((end - start) / step + 1e-9) + 1
    if points > MAX_CELLS:
        # checked before the first request: each target would add this many cells to the recording
        raise DataError(
            url, f"{points:,} points per series (every {step:g} s), more than a recording's limit of {MAX_CELLS:,}"
        )
    session = requests.Session()
    answers: list[requests.Response] = []
    # the client reports a refusal only as message text; keeping the response lets us classify it by status
    session.hooks["response"].append(lambda response, *args, **kwargs: answers.append(response))
    client = PrometheusConnect(
        url=url,
        headers=dict(headers or {}),
        retry=Retry(total=0, raise_on_status=False),
        session=session,
        timeout=timeout,
    )
    parts = []
    try:
        for name, query in queries.items():
            result = _fetch(client, answers, url, name, query, start=start, end=end, step=step)
            parts.append(
                parse_matrix(
                    result, source=f"{url} ({name}: {query})", metric=name, target_label=target_label
                )
            )
    finally:
        client.close()
    return require_metrics(merge(url, parts))


def chunks(start: float, end: float, step: float, max_points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """[(first, last)] evaluation times covering start + k*step <= end, at most `max_points` per piece."""
    # a hair of tolerance so end = start + 100*step is not lost to float rounding of the division
    points = int((end - start) / step + 1e-9) + 1
    return [
        (start + k * step, start + (min(k + max_points, points) - 1) * step)
        for k in range(0, points, max_points)
    ]


def _fetch(
    client: PrometheusConnect,
    answers: list[requests.Response],
    url: str,
    name: str,
    query: str,
    *,
    start: float,
    end: float,
    step: float,
) -> list[dict[str, Any]]:
    """One query's series over the whole range, the chunks of each series joined in time order."""
    joined: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for first, last in chunks(start, end, step, max_points=MAX_POINTS):
        answers.clear()
        try:
            part = client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(first, UTC),
                end_time=datetime.fromtimestamp(last, UTC),
                step=repr(float(step)),
                # the client rounds start and end to whole seconds; these win over its values, keeping a
                # fractional start on the same grid in every chunk
                params={"start": repr(float(first)), "end": repr(float(last))},
            )
        except PrometheusApiClientException as e:
            raise _refused(answers[-1] if answers else None, url, name, query) from e
        except requests.Timeout as e:
            raise TransientError(
                f"{url}: no answer within the timeout ({name}: {query})", provider=PROVIDER, code="timeout"
            ) from e
        except requests.ConnectionError as e:
            raise TransientError(
                f"{url}: cannot connect ({type(e).__name__})", provider=PROVIDER, code="connection"
            ) from e
        except (ValueError, KeyError, TypeError) as e:
            # a 200 whose body is not {"data": {"result": [...]}}: something other than Prometheus answered
            # (before RequestException: requests' JSONDecodeError is both)
            raise PermanentError(
                f"{url}: the answer is not a Prometheus API response",
                provider=PROVIDER,
                code="not-prometheus",
            ) from e
        except requests.RequestException as e:
            raise PermanentError(
                f"{url}: {type(e).__name__}: {e}", provider=PROVIDER, code=type(e).__name__
            ) from e
        for series in part:
            key = tuple(sorted(series.get("metric", {}).items()))
            if key in joined:
                joined[key]["values"].extend(series.get("values", []))
            else:
                joined[key] = {"metric": series.get("metric", {}), "values": list(series.get("values", []))}
    if not joined:
        raise DataError(
            url,
            [
                Problem(
                    f"query {name!r}",
                    f"returned no series between {_iso(start)} and "
                    f"{_iso(end)}: check the metric name and labels ({query})",
                )
            ],
        )
    return list(joined.values())


def _refused(response: requests.Response | None, url: str, name: str, query: str) -> Exception:
    """The project error for a non-200 answer, chosen by its HTTP status and Prometheus's errorType."""
    status = response.status_code if response is not None else 0
    kind, message = "", ""
    if response is not None:
        try:
            body = response.json()
            kind, message = str(body.get("errorType", "")), str(body.get("error", ""))
        except (ValueError, AttributeError):
            message = response.text[:200]
    detail = f"{kind}: {message}" if kind else message or f"HTTP {status}"
    if status in (400, 422):
        # bad_data (a PromQL syntax error, too many points) or execution (e.g. many-to-many matching)
        return DataError(url, [Problem(f"query {name!r}", f"{detail} (in {query})")])
    if status >= 500 or status in (408, 429):
        return TransientError(f"{url}: HTTP {status}: {detail}", provider=PROVIDER, code=str(status))
    return PermanentError(f"{url}: HTTP {status}: {detail}", provider=PROVIDER, code=str(status))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
