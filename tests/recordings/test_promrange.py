"""load_prometheus_range against a real, backfilled Prometheus: data, chunking, and every kind of failure."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from scaler.errors import DataError, PermanentError, TransientError
from scaler.recordings import promrange
from scaler.recordings.load import Recording, load_prometheus_json, load_prometheus_range
from scaler.recordings.promrange import chunks
from tests.support.prometheus import RunningPrometheus, Series, free_port, openmetrics, prometheus

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
STEP = 15.0
POINTS = 2 * 86_400 // 15  # two days at 15 s: 11,520 points, over Prometheus's 11,000-per-request limit
K = np.arange(POINTS)
TIMES = T0 + STEP * K
GAP = (2400, 2640)  # api sends nothing from 10:00 to 11:00

WEB_CPU = 0.25 + (K % 40) / 100
API_CPU = 0.5 + (K % 17) / 50
WEB_REPLICAS = np.full(POINTS, 3.0)
API_REPLICAS = 2.0 + (K // 240) % 3

QUERIES = {
    "cpu": "avg by (service) (app_cpu_utilization)",
    "replicas": "max by (service) (app_replicas)",
}


def _backfill() -> str:
    api = np.r_[0 : GAP[0], GAP[1] : POINTS]
    return openmetrics(
        [
            Series("app_cpu_utilization", {"service": "web", "zone": "a"}, TIMES.tolist(), WEB_CPU.tolist()),
            Series(
                "app_cpu_utilization",
                {"service": "api", "zone": "b"},
                TIMES[api].tolist(),
                API_CPU[api].tolist(),
            ),
            Series("app_replicas", {"service": "web"}, TIMES.tolist(), WEB_REPLICAS.tolist()),
            Series("app_replicas", {"service": "api"}, TIMES.tolist(), API_REPLICAS.tolist()),
        ]
    )


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    with prometheus(tmp_path_factory.mktemp("prometheus"), backfill_text=_backfill()) as running:
        yield running


@pytest.fixture(scope="module")
def two_days(prom: RunningPrometheus) -> Recording:
    return load_prometheus_range(
        prom.url, QUERIES, start=TIMES[0], end=TIMES[-1], step=STEP, target_label="service"
    )


def _row(rec: Recording, target: str) -> int:
    return rec.targets.index(target)


def test_two_days_at_15s_come_back_whole_for_both_targets(two_days: Recording) -> None:
    rec = two_days
    assert sorted(rec.targets) == ["api", "web"]
    np.testing.assert_array_equal(rec.times, TIMES)  # 11,520 points: only possible in several requests
    assert rec.step == STEP
    assert list(rec.metrics) == ["cpu"]
    web, api = _row(rec, "web"), _row(rec, "api")
    np.testing.assert_array_equal(rec.metrics["cpu"][web], WEB_CPU)
    outside_gap = np.r_[0 : GAP[0], GAP[1] : POINTS]
    np.testing.assert_array_equal(rec.metrics["cpu"][api, outside_gap], API_CPU[outside_gap])
    assert rec.replicas is not None
    np.testing.assert_array_equal(rec.replicas[web], WEB_REPLICAS)
    np.testing.assert_array_equal(rec.replicas[api], API_REPLICAS)


def test_a_gap_in_the_data_is_nan_once_prometheus_lookback_runs_out(two_days: Recording) -> None:
    api = two_days.metrics["cpu"][_row(two_days, "api")]
    last_before = API_CPU[GAP[0] - 1]
    # 10:00-10:04:45: Prometheus still answers with the 09:59:45 sample (5 min lookback)
    np.testing.assert_array_equal(api[GAP[0] : GAP[0] + 20], np.full(20, last_before))
    # 10:05:15-10:59:45: nothing recorded, and the recording says so instead of inventing a value
    assert np.isnan(api[GAP[0] + 21 : GAP[1]]).all()


def test_small_chunks_join_into_the_same_recording(
    prom: RunningPrometheus, two_days: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(promrange, "MAX_POINTS", 1000)  # 12 requests per query instead of 2
    rec = load_prometheus_range(prom.url, QUERIES, start=TIMES[0], end=TIMES[-1], step=STEP)
    np.testing.assert_array_equal(rec.times, two_days.times)
    for target in ("web", "api"):
        np.testing.assert_array_equal(
            rec.metrics["cpu"][_row(rec, target)], two_days.metrics["cpu"][_row(two_days, target)]
        )


def test_a_saved_query_range_answer_loads_like_the_live_fetch(
    prom: RunningPrometheus, tmp_path: Path
) -> None:
    start, end = TIMES[100], TIMES[339]
    saved = tmp_path / "cpu.json"
    saved.write_bytes(prom.raw("query_range", query=QUERIES["cpu"], start=start, end=end, step=STEP))
    from_file = load_prometheus_json(saved)
    live = load_prometheus_range(prom.url, {"cpu": QUERIES["cpu"]}, start=start, end=end, step=STEP)
    assert sorted(from_file.targets) == sorted(live.targets) == ["api", "web"]
    np.testing.assert_array_equal(from_file.times, live.times)
    for target in live.targets:
        np.testing.assert_array_equal(
            from_file.metrics["cpu"][_row(from_file, target)], live.metrics["cpu"][_row(live, target)]
        )


def test_raw_series_with_two_varying_labels_need_target_label(prom: RunningPrometheus) -> None:
    window = {"start": TIMES[0], "end": TIMES[99], "step": STEP}
    with pytest.raises(DataError) as err:
        load_prometheus_range(prom.url, {"cpu": "app_cpu_utilization"}, **window)
    assert "'service', 'zone'" in str(err.value) and "target_label" in str(err.value)
    rec = load_prometheus_range(prom.url, {"cpu": "app_cpu_utilization"}, target_label="zone", **window)
    assert sorted(rec.targets) == ["a", "b"]


def test_bad_promql_is_a_data_error_quoting_prometheus(prom: RunningPrometheus) -> None:
    with pytest.raises(DataError) as err:
        load_prometheus_range(
            prom.url, {"cpu": "avg by (service) (app_cpu_utilization"}, start=T0, end=T0 + 600, step=STEP
        )
    assert err.value.source == prom.url
    (problem,) = err.value.problems
    assert problem.where == "query 'cpu'"
    assert problem.what.startswith("bad_data: ") and "parse error" in problem.what


def test_a_query_matching_nothing_is_a_data_error(prom: RunningPrometheus) -> None:
    with pytest.raises(DataError, match="returned no series"):
        load_prometheus_range(prom.url, {"cpu": "app_cpu_utilisation"}, start=T0, end=T0 + 600, step=STEP)


def test_queries_that_disagree_on_targets_are_a_data_error(prom: RunningPrometheus) -> None:
    queries = {"cpu": QUERIES["cpu"], "replicas": 'max by (service) (app_replicas{service="web"})'}
    with pytest.raises(DataError, match="differ from"):
        load_prometheus_range(prom.url, queries, start=T0, end=T0 + 600, step=STEP)


def test_a_dead_server_fails_fast_with_a_transient_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(TransientError) as err:
        load_prometheus_range(url, QUERIES, start=T0, end=T0 + 600, step=STEP)
    # (that it makes one request, not the client's default four, is pinned below with a counting server)
    assert err.value.transient and err.value.code == "connection"


class _Canned(BaseHTTPRequestHandler):
    status = 200
    body = b""
    content_type = "application/json"
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.requests.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _canned_server(status: int, body: bytes, content_type: str) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type(
        "Handler",
        (_Canned,),
        {"status": status, "body": body, "content_type": content_type, "requests": seen},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"status": "error", "errorType": kind, "error": message}).encode()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected", "says"),
    [
        (503, _error("unavailable", "TSDB not ready"), "application/json", TransientError, "TSDB not ready"),
        (429, b"slow down", "text/plain", TransientError, "HTTP 429"),
        (500, b"", "text/plain", TransientError, "HTTP 500"),
        (
            422,
            _error("execution", "many-to-many matching not allowed"),
            "application/json",
            DataError,
            "execution: many-to-many",
        ),
        (401, b"Unauthorized", "text/plain", PermanentError, "HTTP 401"),
        (404, b"404 page not found", "text/plain", PermanentError, "HTTP 404"),
        (200, b"<html>Grafana</html>", "text/html", PermanentError, "not a Prometheus API response"),
    ],
    ids=[
        "503-is-transient",
        "429-is-transient",
        "500-is-transient",
        "422-is-a-bad-query",
        "401-is-permanent",
        "404-is-permanent",
        "html-200-is-not-prometheus",
    ],
)
def test_refusals_are_classified_by_status_after_one_request(
    status: int, body: bytes, content_type: str, expected: type[Exception], says: str
) -> None:
    with _canned_server(status, body, content_type) as (url, seen):
        with pytest.raises(expected) as err:
            load_prometheus_range(url, {"cpu": "up"}, start=T0, end=T0 + 600, step=STEP)
    assert says in str(err.value)
    assert len(seen) == 1, "no hidden retries"


@pytest.mark.parametrize(
    ("start", "end", "step", "max_points", "expected"),
    [
        (0.0, 150.0, 15.0, 11_000, [(0.0, 150.0)]),
        (0.0, 15.0 * 10_999, 15.0, 11_000, [(0.0, 15.0 * 10_999)]),
        (0.0, 15.0 * 11_000, 15.0, 11_000, [(0.0, 15.0 * 10_999), (15.0 * 11_000, 15.0 * 11_000)]),
        (0.0, 100.0, 10.0, 4, [(0.0, 30.0), (40.0, 70.0), (80.0, 100.0)]),
        (0.5, 95.0, 10.0, 4, [(0.5, 30.5), (40.5, 70.5), (80.5, 90.5)]),
        (0.0, 0.3 * 10, 0.3, 6, [(0.0, 0.3 * 5), (0.3 * 6, 0.3 * 10)]),
    ],
    ids=[
        "fits-one",
        "exactly-the-limit",
        "one-past-the-limit",
        "three-pieces",
        "end-off-grid-is-dropped",
        "float-step-keeps-the-last-point",
    ],
)
def test_chunks_cover_the_grid_without_overlap(
    start: float, end: float, step: float, max_points: int, expected: list[tuple[float, float]]
) -> None:
    got = chunks(start, end, step, max_points)
    assert len(got) == len(expected)
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=0, atol=1e-9)
    # every piece stays within the point limit
    assert all(round((last - first) / step) + 1 <= max_points for first, last in got)
