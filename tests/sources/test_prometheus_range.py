"""PrometheusSource.query_range against a real, backfilled Prometheus at fixed past times, its bounds and malformed
answers (from stand-in servers), and the live loop filling a trend window from it end to end."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator

import numpy as np
import pytest

from scaler.clock import FakeClock
from scaler.errors import PermanentError, TransientError
from scaler.live.loop import Group, Loop
from scaler.sources import prometheus as prometheus_source
from scaler.sources.base import range_grid
from scaler.sources.prometheus import MAX_RANGE_POINTS, PrometheusConfig, PrometheusSource
from tests.conftest import make_policy
from tests.sources.fakes import counting_server, http_answer
from tests.support.fake_live import FakeLease, FakeTarget, MemoryStore
from tests.support.prometheus import RunningPrometheus, Series, free_port, openmetrics, prometheus

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC: the data starts here
STEP = 15.0
END = T0 + 7200  # ... and ends two hours later
GAP = (T0 + 3600, T0 + 4500)  # api's CPU has no samples in [01:00, 01:15)
NOW = T0 + 5400  # the loop below ticks at 01:30
NAN = math.nan


def _times(start: float = T0, end: float = END) -> list[float]:
    return [start + STEP * k for k in range(int((end - start) // STEP) + 1)]


def web_cpu(t: float) -> float:
    """+1 % a minute from 10 % at T0."""
    return 10.0 + (t - T0) / 60


def ramp(t: float) -> float:
    """30 % until 20 minutes before NOW, then +2.25 % a minute: 75 % at NOW."""
    return max(30.0, 75.0 + 0.0375 * (t - NOW))


def _series(name: str, labels: dict[str, str], value, times: list[float] | None = None) -> Series:
    times = _times() if times is None else times
    return Series(name, labels, times, [value(t) if callable(value) else value for t in times])


def _backfill() -> str:
    gapped = [t for t in _times() if not GAP[0] <= t < GAP[1]]
    return openmetrics(
        [
            _series("app_cpu", {"service": "web", "pod": "web-1"}, web_cpu),
            _series("app_cpu", {"service": "api", "pod": "api-1"}, 50.0, gapped),
            _series("app_cpu", {"pod": "orphan"}, 70.0),  # no service label: belongs to no target
            # two pods of one service, not aggregated: which one is web's?
            _series("app_mem", {"service": "web", "pod": "web-1"}, 1.0),
            _series("app_mem", {"service": "web", "pod": "web-2"}, 2.0),
            # a recording rule renamed at 01:00: the old series ends, the new one starts after the 5-minute lookback
            _series("app_load", {"service": "web", "rule": "v1"}, 9.0, _times(T0, T0 + 3585)),
            _series("app_load", {"service": "web", "rule": "v2"}, 3.0, _times(T0 + 3900, END)),
            _series("app_ramp", {"service": "web"}, ramp),
            _series("app_ramp", {"service": "api"}, 60.0),
        ]
    )


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    with prometheus(tmp_path_factory.mktemp("prometheus-range"), backfill_text=_backfill()) as running:
        yield running


@pytest.fixture
def source(prom: RunningPrometheus) -> Iterator[PrometheusSource]:
    src = PrometheusSource(PrometheusConfig(url=prom.url))
    yield src
    src.close()


def _last_sample(t: float, gap: tuple[float, float] | None = None) -> float:
    """When the newest sample at or before t was taken (every 15 s from T0, none inside `gap`)."""
    last = T0 + STEP * math.floor((t - T0) / STEP)
    if gap is not None and gap[0] <= last < gap[1]:
        last = gap[0] - STEP
    return last


# -- answers ----------------------------------------------------------------------------------------------------


def test_each_service_gets_its_values_on_the_grid_with_nan_where_it_had_none(source: PrometheusSource) -> None:
    # 00:50:05 to 01:20:05, 5 s off the samples' grid, so no point sits on the edge of the 5-minute lookback
    start, end = T0 + 3005, T0 + 4805
    got = source.query_range("app_cpu", by="service", start=start, end=end, step=STEP)
    assert sorted(got) == ["api", "web"]  # the orphan has no service label
    grid = range_grid(start, end, STEP)
    assert grid.size == 121 and all(v.shape == grid.shape for v in got.values())
    # each point reads the newest sample at or before it: web's ramp, a step every 15 s
    assert got["web"] == pytest.approx([web_cpu(_last_sample(t)) for t in grid])
    # api's last sample before the gap is 00:59:45; five minutes on, it is gone until 01:15
    stale = np.array([t - _last_sample(t, GAP) > 300 for t in grid])
    assert stale.sum() == 41
    assert np.isnan(got["api"][stale]).all() and np.all(got["api"][~stale] == 50.0)


def test_a_start_and_end_between_seconds_are_sent_whole_and_answered_on_range_grid(source: PrometheusSource) -> None:
    got = source.query_range("app_cpu", by="service", start=T0 + 600.4, end=T0 + 1200.3, step=STEP)
    grid = range_grid(T0 + 600.4, T0 + 1200.3, STEP)
    assert grid[0] == T0 + 600 and grid[-1] == T0 + 1200
    assert got["web"] == pytest.approx([web_cpu(t) for t in grid])


def test_a_range_of_exactly_max_range_points_is_answered(source: PrometheusSource) -> None:
    # 11,000 points every 15 s reach back 45.8 hours: before T0 there is no data
    start = END - STEP * (MAX_RANGE_POINTS - 1)
    got = source.query_range("app_cpu", by="service", start=start, end=END, step=STEP)
    grid = range_grid(start, END, STEP)
    assert got["web"].size == MAX_RANGE_POINTS
    assert np.isnan(got["web"][grid < T0]).all() and np.isfinite(got["web"][grid >= T0]).all()


def test_a_series_renamed_one_after_the_other_is_joined(source: PrometheusSource) -> None:
    start, end = T0 + 3305, T0 + 4205
    got = source.query_range("app_load", by="service", start=start, end=end, step=STEP)
    grid = range_grid(start, end, STEP)
    # v1 until five minutes after its last sample (00:59:45), v2 from its first (01:05)
    expected = np.where(grid <= T0 + 3585 + 300, 9.0, np.where(grid >= T0 + 3900, 3.0, NAN))
    assert np.array_equal(got["web"], expected, equal_nan=True)


def test_two_series_with_one_label_value_at_once_are_a_permanent_error(source: PrometheusSource) -> None:
    with pytest.raises(PermanentError) as err:
        source.query_range("app_mem", by="service", start=T0, end=T0 + 600, step=STEP)
    assert err.value.code == "duplicate-label" and "service='web'" in str(err.value)


def test_more_series_than_max_range_series_is_a_permanent_error(
    source: PrometheusSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus_source, "MAX_RANGE_SERIES", 2)
    two = source.query_range('app_cpu{service!=""}', by="service", start=T0, end=T0 + 60, step=STEP)
    assert sorted(two) == ["api", "web"]
    with pytest.raises(PermanentError) as err:  # web, api and the orphan
        source.query_range("app_cpu", by="service", start=T0, end=T0 + 60, step=STEP)
    assert err.value.code == "too-many-series"
    assert "returned 3 series, more than 2; aggregate it by (service)" in str(err.value)


def test_every_range_query_is_counted_answered_or_not(source: PrometheusSource) -> None:
    source.query_range("app_cpu", by="service", start=T0, end=T0 + 60, step=STEP)
    with pytest.raises(PermanentError):
        source.query_range("app_cpu", by="service", start=T0, end=T0 - 60, step=STEP)
    with pytest.raises(PermanentError):
        source.query_range("avg by (", by="service", start=T0, end=T0 + 60, step=STEP)
    assert source.range_queries == 3 and source.queries == 0


# -- refused before anything is sent ----------------------------------------------------------------------------


def _matrix(*series: tuple[dict[str, str], list]) -> bytes:
    result = [{"metric": labels, "values": values} for labels, values in series]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


@pytest.mark.parametrize(
    ("start", "end", "step", "code"),
    [
        (T0, T0 + STEP * MAX_RANGE_POINTS, STEP, "too-many-points"),  # 11,001 points
        (T0 - 2 * 86400, T0, 15.0, "too-many-points"),  # two days at 15 s: 11,521, Prometheus would refuse it
        (T0, T0 + 600, 0.0, "bad-range"),
        (T0, T0 + 600, -15.0, "bad-range"),
        (T0, T0 - 600, STEP, "bad-range"),  # ends before it starts
        (NAN, T0, STEP, "bad-range"),
    ],
    ids=["one-point-too-many", "two-days-at-15s", "step-0", "negative-step", "end-before-start", "nan-start"],
)
def test_a_range_out_of_bounds_is_refused_before_any_request(start, end, step, code) -> None:
    # the server would answer, with a well-formed matrix: only the bound can refuse it
    ok = http_answer(200, _matrix(({"service": "web"}, [[T0, "1"]])))
    with counting_server("answer", ok) as server:
        source = PrometheusSource(PrometheusConfig(url=server.url))
        with pytest.raises(PermanentError) as err:
            source.query_range("app_cpu", by="service", start=start, end=end, step=step)
        assert server.connections == 0
    assert err.value.code == code and source.range_queries == 1


def test_the_same_server_answers_a_range_within_bounds() -> None:
    ok = http_answer(200, _matrix(({"service": "web"}, [[T0, "1"], [T0 + 30, "+Inf"]])))
    with counting_server("answer", ok) as server:
        source = PrometheusSource(PrometheusConfig(url=server.url))
        got = source.query_range("app_cpu", by="service", start=T0, end=T0 + 30, step=STEP)
        assert server.connections == 1
    # T0 + 15 is missing from the answer, T0 + 30 is not finite
    assert np.array_equal(got["web"], [1.0, NAN, NAN], equal_nan=True)


# -- malformed answers ------------------------------------------------------------------------------------------


def _answer(kind: str, result) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": kind, "result": result}}).encode()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_answer("vector", [{"metric": {"service": "web"}, "value": [T0, "1"]}]), "not-a-matrix"),
        (_answer("scalar", [T0, "1"]), "not-a-matrix"),
        (_answer("string", [T0, "web"]), "not-a-matrix"),
        (_answer("matrix", [{"metric": {"service": "web"}, "histograms": [[T0, {"count": "3"}]]}]), "not-a-float"),
        (_answer("matrix", [{"metric": {"service": "web"}, "values": [[T0, "lots"]]}]), "not-prometheus"),
        (_answer("matrix", [{"metric": {"service": "web"}, "values": [["then", "1"]]}]), "not-prometheus"),
        # json reads a bare Infinity as a float, and round() of it is an OverflowError, not a ValueError
        (_answer("matrix", [{"metric": {"service": "web"}, "values": [[math.inf, "1"]]}]), "not-prometheus"),
        (_answer("matrix", [{"metric": {"service": "web"}, "values": {"t": "1"}}]), "not-prometheus"),
        (b'{"status": "success", "data": {}}', "not-prometheus"),
    ],
    ids=[
        "vector",
        "scalar",
        "string",
        "native-histogram",
        "value-not-a-number",
        "time-not-a-number",
        "time-infinite",
        "values-not-a-list",
        "no-result",
    ],
)
def test_answers_that_are_not_float_matrices_are_permanent(body: bytes, code: str) -> None:
    with counting_server("answer", http_answer(200, body)) as server:
        source = PrometheusSource(PrometheusConfig(url=server.url))
        with pytest.raises(PermanentError) as err:
            source.query_range("app_cpu", by="service", start=T0, end=T0 + 60, step=STEP)
        assert server.connections == 1
    assert err.value.code == code


def test_a_dead_prometheus_is_transient_for_a_range_query_too() -> None:
    source = PrometheusSource(PrometheusConfig(url=f"http://127.0.0.1:{free_port()}"))  # nothing listens
    with pytest.raises(TransientError) as err:
        source.query_range("up", by="job", start=T0, end=T0 + 60, step=STEP)
    assert err.value.code == "connection"


# -- the loop, end to end ---------------------------------------------------------------------------------------

CPU = {
    "name": "cpu",
    "query": "avg by (service) (app_ramp)",
    "target": 70,
    "scale_up_above": 80,
    "scale_down_below": 50,
    "window": {"type": "trend", "length": "20m", "lead": "5m"},
}


class InstantOnly:
    """The same Prometheus read through `query` alone: what the loop would see without range queries."""

    def __init__(self, source: PrometheusSource):
        self.query = source.query


def _tick(source) -> tuple[Loop, Group, tuple[FakeTarget, FakeTarget]]:
    web, api = FakeTarget("web"), FakeTarget("api")
    group = Group(
        policy=make_policy(metrics=[CPU], interval=15),
        target_label="service",
        labels=("web", "api"),
        targets=(web, api),
    )
    loop = Loop([group], source=source, store=MemoryStore(), lease=FakeLease(), clock=FakeClock(NOW), workers=4)
    return loop, group, (web, api)


def test_the_loop_forecasts_from_prometheus_history_at_its_first_tick(
    source: PrometheusSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scaler.live.loop")
    loop, g, (web, api) = _tick(source)
    report = loop.tick(g)
    # 01:30: web's last 20 minutes rose from 30 % to 75 %; 5 minutes ahead the line reads 86.25 %, above 80:
    # ceil(3 x 86.25 / 70) = 4. api is flat at 60 %.
    assert report.decision.smoothed[0] == pytest.approx([86.25, 60.0])
    assert web.writes == [4] and api.writes == [] and report.ok
    assert source.range_queries == 1 and source.queries == 1
    assert any(
        "windows filled from history: cpu 80 samples every 15 s for 2 of 2 targets" in r.getMessage()
        for r in caplog.records
    )
    loop.clock.advance(15)
    loop.tick(g)
    assert source.range_queries == 1 and source.queries == 2

    # the same Prometheus without range queries: the first tick sees 75 %, inside the band, and holds
    loop, g, (web, api) = _tick(InstantOnly(source))
    report = loop.tick(g)
    assert report.decision.smoothed[0] == pytest.approx([75.0, 60.0])
    assert web.writes == [] and api.writes == []


# -- answers too large ------------------------------------------------------------------------------------------


def test_an_answer_past_max_answer_bytes_is_refused_while_it_is_read(monkeypatch) -> None:
    series = [({"service": f"pod-{k}"}, [[T0, "1"], [T0 + 15, "2"]]) for k in range(200)]  # about 12 KB
    body = _matrix(*series)
    monkeypatch.setattr(prometheus_source, "MAX_ANSWER_BYTES", len(body) - 1)
    with counting_server("answer", http_answer(200, body)) as server:
        source = PrometheusSource(PrometheusConfig(url=server.url))
        with pytest.raises(PermanentError) as err:
            source.query_range("app_cpu", by="service", start=T0, end=T0 + 15, step=STEP)
        assert err.value.code == "too-large" and "aggregate it by the target label" in str(err.value)
        # at exactly the bound it is read whole, and answered
        monkeypatch.setattr(prometheus_source, "MAX_ANSWER_BYTES", len(body))
        got = source.query_range("app_cpu", by="service", start=T0, end=T0 + 15, step=STEP)
    assert len(got) == 200 and np.array_equal(got["pod-7"], [1.0, 2.0])
