"""PrometheusSource against a Prometheus scraping a live exporter every second: new values arrive, and a
dead exporter's series vanish (staleness markers) instead of freezing at their last value."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from scaler.sources.prometheus import PrometheusConfig, PrometheusSource
from tests.support.prometheus import RunningPrometheus, free_port, prometheus

pytestmark = pytest.mark.e2e  # every test here starts real servers

JOB = "exporter"
LOAD = "max by (service) (app_load)"


@dataclass
class Exporter:
    port: int
    load: Gauge
    server: WSGIServer

    def kill(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    load = Gauge("app_load", "Work in flight per replica, as a fraction of capacity", ["service"],
                 registry=registry)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    running = Exporter(port, load, server)
    yield running
    running.kill()  # a second shutdown is harmless


@pytest.fixture
def prom(tmp_path, exporter: Exporter) -> Iterator[RunningPrometheus]:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": JOB, "scrape_timeout": "500ms",
             "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        ],
    }
    with prometheus(tmp_path / "prometheus", config=config) as running:
        yield running


def _until(seen: Callable[[], dict[str, float]], expected: dict[str, float], patience: float = 30) -> None:
    """Poll until the query answers `expected`; fails with the last answer if it never does."""
    deadline = time.monotonic() + patience
    last = seen()
    while last != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        last = seen()
    assert last == expected


def test_a_scraped_gauge_shows_up_changes_and_vanishes_with_its_exporter(
    prom: RunningPrometheus, exporter: Exporter
) -> None:
    source = PrometheusSource(PrometheusConfig(url=prom.url))

    def ask(promql: str, by: str) -> Callable[[], dict[str, float]]:
        return lambda: source.query(promql, by=by, now=time.time())

    # the first scrape comes ~5 s after start (target discovery is throttled)
    _until(ask(f'up{{job="{JOB}"}} == 1', "job"), {JOB: 1.0})

    exporter.load.labels(service="web").set(0.5)
    _until(ask(LOAD, "service"), {"web": 0.5})

    exporter.load.labels(service="web").set(0.75)
    exporter.load.labels(service="api").set(0.25)
    _until(ask(LOAD, "service"), {"web": 0.75, "api": 0.25})

    # the next scrape fails: Prometheus marks the exporter's series stale at once, so they drop out
    # instead of repeating 0.75 for the 5 minutes of lookback
    exporter.kill()
    _until(ask(LOAD, "service"), {})
    _until(ask(f'up{{job="{JOB}"}}', "job"), {JOB: 0.0})
