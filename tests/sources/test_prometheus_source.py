"""PrometheusSource.query against a real, backfilled Prometheus at a fixed past `now`, and every way it fails."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from scaler.errors import PermanentError, TransientError
from scaler.sources.prometheus import PrometheusConfig, PrometheusSource
from tests.sources.fakes import counting_server, http_answer
from tests.support.prometheus import RunningPrometheus, Series, free_port, openmetrics, prometheus

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
STEP = 15.0
NOW = T0 + 3600  # every query below is evaluated at this instant, an hour into the data
MID = NOW - 1800  # api's CPU steps from 0.8 to 0.9 here
NAN = math.nan


def _grid(start: float, end: float) -> list[float]:
    return [start + STEP * k for k in range(int((end - start) // STEP) + 1)]


def _series(name: str, labels: dict[str, str], start: float, end: float, value) -> Series:
    times = _grid(start, end)
    return Series(name, labels, times, [value(t) if callable(value) else value for t in times])


def _backfill() -> str:
    cpu = "app_cpu_utilization"
    load = "service:load:ratio"  # what a recording rule would write: already one series per service
    return openmetrics(
        [
            _series(cpu, {"service": "web", "pod": "web-1"}, T0, NOW, 0.4),
            _series(cpu, {"service": "web", "pod": "web-2"}, T0, NOW, 0.6),
            _series(cpu, {"service": "api", "pod": "api-1"}, T0, NOW, lambda t: 0.8 if t < MID else 0.9),
            _series(cpu, {"pod": "orphan"}, T0, NOW, 0.7),  # no service label: belongs to no target
            _series(cpu, {"service": "batch", "pod": "batch-1"}, T0, NOW, NAN),  # the exporter says NaN
            _series("app_queue_depth", {"service": "web"}, T0, NOW, 0.0),
            _series("app_queue_depth", {"service": "api"}, T0, NOW, 4.0),
            _series(load, {"service": "web"}, T0, NOW, lambda t: 3.0 if t == NOW else 1.0),
            _series(load, {"service": "api"}, T0, NOW - 600, 2.0),  # stopped 10 min before NOW
            _series(load, {"service": "db"}, T0, NOW - 90, 7.0),  # last seen 90 s before NOW
            _series(load, {"service": "cache"}, T0, NOW, lambda t: NAN if t == NOW else 5.0),
            # the same rule under an old label set, gone 20 min before NOW: stale, so not a second "web"
            _series(load, {"service": "web", "rule": "v1"}, T0, NOW - 1200, 9.0),
        ]
    )


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    with prometheus(tmp_path_factory.mktemp("prometheus"), backfill_text=_backfill()) as running:
        yield running


@pytest.fixture
def source(prom: RunningPrometheus) -> Iterator[PrometheusSource]:
    src = PrometheusSource(PrometheusConfig(url=prom.url))
    yield src
    src.close()


@pytest.mark.parametrize(
    ("promql", "now", "expected"),
    [
        # web: mean of 0.4 and 0.6; the orphan has no service; batch's mean is NaN
        ("avg by (service) (app_cpu_utilization)", NOW, {"web": 0.5, "api": 0.9}),
        # the same query half an hour earlier sees api before its step up
        ("avg by (service) (app_cpu_utilization)", MID - 60, {"web": 0.5, "api": 0.8}),
        # web: 0/0 = NaN, api: 4/4 = 1
        ("avg by (service) (app_queue_depth) / avg by (service) (app_queue_depth)", NOW, {"api": 1.0}),
        # web: 0/0 = NaN, api: 4/0 = +Inf; nothing is left
        ("avg by (service) (app_queue_depth) / 0", NOW, {}),
        ('avg by (service) (app_cpu_utilization{service="nope"})', NOW, {}),
        # newest sample of each series: web's 3.0 at NOW, db's 7.0 from 90 s ago (< 120 s); api's last
        # sample is 10 min old and cache's newest is NaN; the stale v1 series is no clash with web
        ("service:load:ratio[30m]", NOW, {"web": 3.0, "db": 7.0}),
    ],
    ids=[
        "avg-by-service-skips-no-label-and-nan",
        "evaluated-at-now-not-at-the-latest-sample",
        "zero-over-zero-is-left-out",
        "infinity-is-left-out",
        "nothing-matches",
        "range-selector-takes-newest-fresh-sample",
    ],
)
def test_query_maps_each_service_to_its_value(
    source: PrometheusSource, promql: str, now: float, expected: dict[str, float]
) -> None:
    assert source.query(promql, by="service", now=now) == pytest.approx(expected)


def test_stale_after_sets_how_old_a_range_selectors_newest_sample_may_be(prom: RunningPrometheus) -> None:
    strict = PrometheusSource(PrometheusConfig(url=prom.url, stale_after="60s"))
    # db's newest sample is 90 s old: fresh enough for the default 120 s, not for 60 s
    assert strict.query("service:load:ratio[30m]", by="service", now=NOW) == {"web": 3.0}


@pytest.mark.parametrize(
    "promql",
    ["app_cpu_utilization", "app_cpu_utilization[1m]"],
    ids=["instant-vector", "range-selector"],
)
def test_two_series_with_one_label_value_is_a_permanent_error_naming_it(
    source: PrometheusSource, promql: str
) -> None:
    # web-1 and web-2 both say service="web": which one is web's CPU?
    with pytest.raises(PermanentError) as err:
        source.query(promql, by="service", now=NOW)
    assert "service='web'" in str(err.value)
    assert "aggregate it by (service)" in str(err.value)
    assert err.value.code == "duplicate-label"


@pytest.mark.parametrize(
    ("promql", "status", "says"),
    [
        (
            "avg by (service) (app_cpu_utilization",
            "400",
            'bad_data: invalid parameter "query": 1:38: parse error: unclosed left parenthesis',
        ),
        ("app_cpu_utilization / on (service) app_cpu_utilization", "422", "execution: "),
    ],
    ids=["syntax-error-400", "many-to-many-422"],
)
def test_a_query_prometheus_rejects_is_permanent_and_quotes_prometheus(
    source: PrometheusSource, promql: str, status: str, says: str
) -> None:
    with pytest.raises(PermanentError) as err:
        source.query(promql, by="service", now=NOW)
    assert err.value.code == status
    assert says in str(err.value)
    assert repr(promql) in str(err.value)


@pytest.mark.parametrize(
    ("promql", "kind"),
    [("scalar(sum(app_queue_depth))", "scalar"), ('"web"', "string")],
    ids=["scalar", "string"],
)
def test_a_query_that_is_not_a_vector_is_permanent(source: PrometheusSource, promql: str, kind: str) -> None:
    with pytest.raises(PermanentError) as err:
        source.query(promql, by="service", now=NOW)
    assert f"returned a {kind}; it must return a vector with label 'service'" in str(err.value)


def test_every_query_is_counted_answered_or_not(source: PrometheusSource) -> None:
    source.query("avg by (service) (app_cpu_utilization)", by="service", now=NOW)
    source.query("service:load:ratio[30m]", by="service", now=NOW)
    with pytest.raises(PermanentError):
        source.query("avg by (", by="service", now=NOW)
    assert source.queries == 3


def test_a_dead_prometheus_is_transient() -> None:
    source = PrometheusSource(PrometheusConfig(url=f"http://127.0.0.1:{free_port()}"))  # nothing listens
    with pytest.raises(TransientError) as err:
        source.query("up", by="job", now=NOW)
    assert err.value.code == "connection"
    assert "Connection refused" in str(err.value)


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"status": "error", "errorType": kind, "error": message}).encode()


@pytest.mark.parametrize(
    ("behaviour", "answer", "expected", "code"),
    [
        ("answer", http_answer(503, _error("unavailable", "TSDB not ready")), TransientError, "503"),
        # urllib3 would honour Retry-After and try again; with one attempt the 503 comes straight back
        ("answer", http_answer(503, b"busy", headers={"Retry-After": "30"}), TransientError, "503"),
        ("answer", http_answer(429, b"slow down", content_type="text/plain"), TransientError, "429"),
        ("answer", http_answer(502, b"<html>bad gateway</html>", content_type="text/html"), TransientError, "502"),
        ("reset", b"", TransientError, "connection"),
        ("answer", http_answer(401, b"Unauthorized", content_type="text/plain"), PermanentError, "401"),
        ("answer", http_answer(404, b"404 page not found", content_type="text/plain"), PermanentError, "404"),
        ("answer", http_answer(200, b"<html>Grafana</html>", content_type="text/html"), PermanentError,
         "not-prometheus"),
    ],
    ids=[
        "503-transient",
        "503-retry-after-not-waited-for",
        "429-transient",
        "502-transient",
        "reset-transient",
        "401-permanent",
        "404-permanent",
        "html-200-is-not-prometheus",
    ],
)
def test_failures_are_classified_after_exactly_one_connection(
    behaviour, answer: bytes, expected: type[Exception], code: str
) -> None:
    with counting_server(behaviour, answer) as server:
        source = PrometheusSource(PrometheusConfig(url=server.url))
        with pytest.raises(expected) as err:
            source.query("up", by="job", now=NOW)
        assert server.connections == 1, "no hidden retries"
    assert err.value.code == code


def test_a_server_that_never_answers_costs_one_timeout() -> None:
    with counting_server("silent") as server:
        source = PrometheusSource(PrometheusConfig(url=server.url, timeout="200ms"))
        with pytest.raises(TransientError) as err:
            source.query("up", by="job", now=NOW)
        assert server.connections == 1
    assert err.value.code == "timeout"
    assert "no answer within 0.2 s" in str(err.value)


def _answer(result: list) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_answer([{"metric": {"service": "web"}, "histogram": [NOW, {"count": "3", "sum": "1.5"}]}]), "not-a-float"),
        (_answer([{"metric": {"service": "web"}, "value": [NOW, "lots"]}]), "not-prometheus"),
        (b'{"status": "success", "data": {}}', "not-prometheus"),
    ],
    ids=["native-histogram", "value-not-a-number", "no-result"],
)
def test_answers_that_are_not_float_vectors_are_permanent(body: bytes, code: str) -> None:
    with counting_server("answer", http_answer(200, body)) as server:
        source = PrometheusSource(PrometheusConfig(url=server.url))
        with pytest.raises(PermanentError) as err:
            source.query("app_latency", by="service", now=NOW)
    assert err.value.code == code
