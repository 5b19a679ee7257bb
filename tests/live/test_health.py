"""Health rules: when a metric rule or an HTTP check fires and resolves, tick by tick."""

from __future__ import annotations

import http.server
import threading

import numpy as np
import pytest
from pydantic import ValidationError

from scaler.live.health import HealthRule, HttpCheck, RuleState, metric_condition, probe, step

NAN = float("nan")


def rule(**kw) -> HealthRule:
    return HealthRule.model_validate({"name": "r", **kw})


# Each row: the rule, the smoothed values per tick (one target, ticks 15 s apart), and at which ticks it
# fires (F) and resolves (R).
CASES = [
    ("p95 > 30 s fires at once", {"metric": "p95", "above": 30}, [1, 31, 32, 1], "-F-R"),
    ("error rate > 5 % for 5 m", {"metric": "e", "above": 0.05, "for": "5m"},
     [0.06] * 21 + [0.01], "-" * 20 + "F" + "R"),
    ("a dip resets the duration", {"metric": "e", "above": 0.05, "for": "30s"},
     [0.06, 0.06, 0.01, 0.06, 0.06, 0.06], "--" + "-" * 3 + "F"),
    ("no data resets it too, as in Prometheus", {"metric": "e", "above": 0.05, "for": "30s"},
     [0.06, 0.06, NAN, 0.06, 0.06, 0.06], "-----F"),
    ("below", {"metric": "ready", "below": 1}, [2, 0, 0, 2], "-F-R"),
]


@pytest.mark.parametrize("kw,values,expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_metric_rules(kw, values, expect):
    r = rule(**kw)
    state, got = RuleState.empty(1), ""
    for i, v in enumerate(values):
        state, fired, resolved = step(r, state, metric_condition(r, np.array([v])), 1000.0 + 15 * i)
        got += "F" if fired[0] else "R" if resolved[0] else "-"
    assert got == expect


def test_http_rule_fires_on_the_third_failure_in_a_row():
    r = rule(http={"url": "http://127.0.0.1:1/{target}"}, failures=3)
    state, got = RuleState.empty(1), ""
    for i, failed in enumerate([True, True, False, True, True, True, True, False]):
        state, fired, resolved = step(r, state, np.array([failed]), 15.0 * i)
        got += "F" if fired[0] else "R" if resolved[0] else "-"
    assert got == "-----F-R"


@pytest.mark.parametrize("kw,problem", [
    ({}, "exactly one of metric or http"),
    ({"metric": "e"}, "exactly one of above or below"),
    ({"metric": "e", "above": 1, "below": 0}, "exactly one of above or below"),
    ({"http": {"url": "http://x/"}, "for": "1m"}, "http rules use failures"),
    ({"http": {"url": "ftp://x/"}}, "url"),
], ids=["nothing", "no threshold", "two thresholds", "http with for", "not http"])
def test_bad_rules_say_why(kw, problem):
    with pytest.raises(ValidationError) as e:
        rule(**kw)
    assert problem in str(e.value)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/good" else 503)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_probe_reads_status_and_connection_failures():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert probe(HttpCheck(url=base + "/{target}"), "good").ok
        bad = probe(HttpCheck(url=base + "/{target}"), "bad")
        assert not bad.ok and bad.status == "503"
        assert probe(HttpCheck(url=base + "/x", expect_status=[503]), "x").ok
    finally:
        srv.shutdown()
        srv.server_close()
    gone = probe(HttpCheck(url=base + "/good", timeout=1), "t")
    assert not gone.ok and gone.status == "ConnectionRefusedError"
