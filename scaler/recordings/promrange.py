"""Recorded metrics from a live Prometheus: range queries fetched in pieces, several at once, errors classified."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import requests

from scaler.errors import DataError, PermanentError, Problem, TransientError
from scaler.recordings.model import (
    MAX_CELLS,
    MAX_SERIES,
    REPLICAS,
    Problems,
    Recording,
    build,
    merge,
    require_metrics,
)
from scaler.recordings.promjson import _series, target_names

MAX_POINTS = 11_000
"""Prometheus rejects a range query whose series would have more points than this ("exceeded maximum
resolution of 11,000 points per timeseries"): two days at a 15 s step is 11,521 points, so two requests."""
PROBE = 240
"""Points of the first piece of each query (an hour at 15 s), fetched to count its series."""
PIECE_SAMPLES = 1_000_000
"""Samples in one piece at most: parsed, a piece costs about 150 bytes a sample (150 MB) until its worker has
turned it into arrays, so CONCURRENCY pieces in flight stay within about 600 MB. 100 series get 10,000 points a
piece (a week at 15 s in 5 pieces), 1,000 series 1,000."""
CONCURRENCY = 4
"""Pieces fetched at once. A week at 15 s is 4 pieces per query; Prometheus evaluates 20 queries at a time by
default (--query.max-concurrency), so 4 leaves room for its dashboards and rules."""

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
    progress: Callable[[float, float], None] | None = None,
    concurrency: int = CONCURRENCY,
) -> Recording:
    """Fetch `queries` ({metric name: PromQL}) over [start, end] every `step` seconds as one Recording.

    Each query should be aggregated by the label that names targets (`avg by (service) (...)`), so each of
    its series is one target; targets are named as in load_prometheus_json, and every query must return the
    same targets. The key "replicas" fills Recording.replicas. Long ranges are fetched in pieces of at most
    MAX_POINTS points, on the one grid start + k*step, so the pieces join without overlap; up to `concurrency`
    pieces are in flight at once, and each answer becomes numpy arrays as soon as it arrives (no list of every
    sample is ever held). `progress(done, total)` hears of each piece.

    Nothing is retried here (one request per piece): this call fails fast and says why, and whoever calls it
    owns the retry policy. A query Prometheus rejects is a DataError; a refused connection, a timeout, 5xx or
    429 is a TransientError; any other refusal (401, 403, 404, a server that does not answer like Prometheus)
    is a PermanentError. Problems are reported as if each query had been one answer.
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
    session = requests.Session()  # no retries: requests' default adapter makes one attempt
    session.headers.update(dict(headers or {}))
    ordered: list[tuple[_Piece, Future]] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:

            def fetch(piece: _Piece) -> tuple[_Piece, Future]:
                return piece, pool.submit(_fetch, session, url, piece, step, timeout)

            try:
                # The first piece of each query is short: its answer tells how many series the query has, which
                # sizes the others so that none holds more than PIECE_SAMPLES samples.
                probe = min(PROBE, points)
                probes = [fetch(_Piece(name, query, start, start + (probe - 1) * step))
                          for name, query in queries.items()]
                for piece, future in probes:
                    ordered.append((piece, future))
                    if future.exception() is not None:
                        break  # raised in its turn, after the pieces of the queries before it
                    per = max(1, min(MAX_POINTS, PIECE_SAMPLES // max(1, len(future.result()))))
                    ordered += [fetch(_Piece(piece.name, piece.query, first, last))
                                for first, last in chunks(start, end, step, max_points=per, skip=probe)]
                parts = _join(url, ordered, start=start, end=end, target_label=target_label, progress=progress)
            except BaseException:
                for _, f in ordered:
                    f.cancel()
                raise
    finally:
        session.close()
    return require_metrics(merge(url, parts))


class _Piece(NamedTuple):
    name: str
    query: str
    first: float
    last: float


def _join(
    url: str,
    ordered: list[tuple[_Piece, Future]],
    *,
    start: float,
    end: float,
    target_label: str | None,
    progress: Callable[[float, float], None] | None,
) -> list[Recording]:
    """One Recording per query from its pieces' answers, taken in order as they arrive (so the first failure in
    query order is the one raised, as when they were fetched one after another)."""
    parts: list[Recording] = []
    current: _Query | None = None
    for k, (piece, future) in enumerate(ordered):
        if current is None or current.name != piece.name:
            if current is not None:
                parts.append(current.recording(start, end, target_label))
            current = _Query(url, piece.name, piece.query)
        current.add(future.result())
        if progress is not None:
            progress(k + 1, len(ordered))
    assert current is not None
    parts.append(current.recording(start, end, target_label))
    return parts


class _Query:
    """One query's series, joined piece by piece into numpy arrays (time, value) per series."""

    def __init__(self, url: str, name: str, query: str) -> None:
        self.url = url
        self.name = name
        self.query = query
        self.source = f"{url} ({name}: {query})"
        self.problems = Problems(self.source)
        self.keys: dict[tuple[tuple[str, str], ...], int] = {}  # label set -> position in the joined answer
        self.labels: list[dict[str, str]] = []
        self.times: list[list[np.ndarray]] = []
        self.values: list[list[np.ndarray]] = []
        self.counts: list[int] = []

    def add(self, result: list[Any]) -> None:
        for entry in result:
            if isinstance(entry, _Arrays):
                self._add(tuple(sorted(entry.metric.items())), entry.metric, entry.times, entry.values)
                continue
            metric = entry.get("metric", {}) if isinstance(entry, dict) else {}
            key = tuple(sorted((str(k), str(v)) for k, v in (metric or {}).items())) if isinstance(metric, dict) \
                else (("", repr(metric)),)
            i = self.keys.setdefault(key, len(self.keys))
            if i == len(self.labels):
                self.labels.append({})
                self.times.append([])
                self.values.append([])
                self.counts.append(0)
            parsed = _series(entry, f"result[{i}]", self.problems, offset=self.counts[i])
            if isinstance(entry, dict) and isinstance(entry.get("values"), list):
                self.counts[i] += len(entry["values"])
            if parsed is None:
                continue
            labels, times, values = parsed
            self.labels[i] = labels
            self.times[i].append(times)
            self.values[i].append(values)

    def _add(self, key: tuple[tuple[str, str], ...], labels: dict[str, str], times: np.ndarray,
             values: np.ndarray) -> None:
        i = self.keys.setdefault(key, len(self.keys))
        if i == len(self.labels):
            self.labels.append({})
            self.times.append([])
            self.values.append([])
            self.counts.append(0)
        self.counts[i] += times.size
        self.labels[i] = labels
        self.times[i].append(times)
        self.values[i].append(values)

    def recording(self, start: float, end: float, target_label: str | None) -> Recording:
        if not self.keys:
            raise DataError(self.url, [Problem(f"query {self.name!r}", f"returned no series between {_iso(start)} "
                                               f"and {_iso(end)}: check the metric name and labels ({self.query})")])
        self.problems.raise_if_any()
        names = target_names(self.labels, target_label, self.problems)
        self.problems.raise_if_any()
        times = [np.concatenate(t) if t else np.empty(0) for t in self.times]
        values = np.concatenate([np.concatenate(v) if v else np.empty(0) for v in self.values])
        is_replicas = self.name == REPLICAS
        return build(
            self.source,
            targets=names,
            target_index=np.repeat(np.arange(len(times)), [t.size for t in times]),
            times=np.concatenate(times),
            values={} if is_replicas else {self.name: values},
            replicas=values if is_replicas else None,
        )


def chunks(
    start: float, end: float, step: float, max_points: int = MAX_POINTS, *, skip: int = 0
) -> list[tuple[float, float]]:
    """[(first, last)] evaluation times covering start + k*step <= end from k = `skip` on, at most `max_points` per
    piece (each time computed from start, so every piece lies on the one grid)."""
    # a hair of tolerance so end = start + 100*step is not lost to float rounding of the division
    points = int((end - start) / step + 1e-9) + 1
    return [
        (start + k * step, start + (min(k + max_points, points) - 1) * step)
        for k in range(skip, points, max_points)
    ]


def _fetch(session: requests.Session, url: str, piece: _Piece, step: float, timeout: float) -> list[Any]:
    """One piece's `result` list (on a worker thread), or the project error that says why not."""
    name, query = piece.name, piece.query
    try:
        response = session.get(
            f"{url.rstrip('/')}/api/v1/query_range",
            # repr keeps a fractional start on the same grid in every piece
            params={"query": query, "start": repr(float(piece.first)), "end": repr(float(piece.last)),
                    "step": repr(float(step))},
            timeout=timeout,
        )
    except requests.Timeout as e:
        raise TransientError(
            f"{url}: no answer within the timeout ({name}: {query})", provider=PROVIDER, code="timeout"
        ) from e
    except requests.ConnectionError as e:
        raise TransientError(
            f"{url}: cannot connect ({type(e).__name__})", provider=PROVIDER, code="connection"
        ) from e
    except requests.RequestException as e:
        raise PermanentError(f"{url}: {type(e).__name__}: {e}", provider=PROVIDER, code=type(e).__name__) from e
    if response.status_code != 200:
        raise _refused(response, url, name, query)
    try:
        result = response.json()["data"]["result"]
        if not isinstance(result, list):
            raise TypeError("result is not a list")
    except (ValueError, KeyError, TypeError) as e:
        # a 200 whose body is not {"data": {"result": [...]}}: something other than Prometheus answered
        raise PermanentError(
            f"{url}: the answer is not a Prometheus API response", provider=PROVIDER, code="not-prometheus"
        ) from e
    del response
    # each series becomes arrays here, on the worker, so at most one parsed answer per worker is alive (a piece
    # of 1,000 series is 11 M pairs, ~1.6 GB as Python objects); a series with a problem stays as it came, to be
    # named by its place in the whole answer
    return [_compact(entry) or entry for entry in result]


class _Arrays(NamedTuple):
    """A series read without a problem: its labels, times and values."""

    metric: dict[str, str]
    times: np.ndarray
    values: np.ndarray


def _compact(entry: Any) -> _Arrays | None:
    found = Problems("")
    parsed = _series(entry, "", found)
    if parsed is None or found:
        return None
    labels, times, values = parsed
    return _Arrays(labels, times, values)


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
