"""The live loop fills its windows from the metric source's history when it loads a policy's state (fresh or saved):
one range query per metric for all targets, so a 20-minute trend or a daily seasonal window works from the first
tick after a restart. Fakes of the loop's interfaces and a fake clock."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from scaler.clock import FakeClock
from scaler.decision.reasons import Reason
from scaler.live.decisionlog import DecisionLog, read_tail
from scaler.live.loop import Group, Loop
from scaler.retry import RetryPolicy
from tests.conftest import make_policy
from tests.support.fake_live import FakeLease, FakeSource, FakeTarget, MemoryStore

T0 = 1_700_000_000.0  # the fake clock's start: the first tick
DAY = 86400.0

# A 20-minute trend read 5 minutes ahead, and an error rate with no window.
CPU = {
    "name": "cpu",
    "query": "cpu",
    "target": 70,
    "scale_up_above": 80,
    "scale_down_below": 50,
    "window": {"type": "trend", "length": "20m", "lead": "5m"},
}
ERRORS = {
    "name": "errors",
    "query": "errors",
    "kind": "error_rate",
    "target": 0.01,
    "scale_up_above": 0.05,
    "scale_down_below": 0.01,
    "window": {"type": "last"},
}


def ramp(t: float) -> float:
    """CPU % rising from 30 at T0 - 20 min to 75 at T0: +2.25 % a minute, 86.25 % five minutes after T0."""
    return 75.0 + 0.0375 * (t - T0)


def flat(t: float) -> float:
    return 60.0


def policy(**over):
    return make_policy(**{"metrics": [CPU, ERRORS], "replicas": {"min": 1, "max": 20}, "interval": 15, **over})


def setup(pol=None, targets=None, *, values=None, history=None, store=None, clock=None, log=None, source=None):
    pol = pol or policy()
    targets = targets or [FakeTarget("a"), FakeTarget("b")]
    clock = clock or FakeClock(T0)
    if source is None:
        source = FakeSource({k: dict(v) for k, v in (values or {}).items()}, history=dict(history or {}))
    group = Group(policy=pol, target_label="service", labels=tuple(t.name for t in targets), targets=tuple(targets))
    loop = Loop(
        [group],
        source=source,
        store=store or MemoryStore(),
        lease=FakeLease(),
        clock=clock,
        retry=RetryPolicy(attempts=3, initial=0.01, max_delay=0.05, jitter=0),
        decisions=log,
        workers=4,
    )
    return loop, group, source, targets, clock


NOW_VALUES = {"cpu": {"a": ramp(T0), "b": 60.0}, "errors": {"a": 0.0, "b": 0.0}}
HISTORY = {"cpu": {"a": ramp, "b": flat}}


# -- the first tick forecasts from history ----------------------------------------------------------------------


def test_the_first_tick_already_scales_up_on_the_trend_of_the_history():
    loop, g, source, (a, b), clock = setup(values=NOW_VALUES, history=HISTORY)
    report = loop.tick(g)
    # t+0: the 80 samples of the last 20 minutes and this one lie on one line: 5 minutes ahead it reads
    # 75 + 0.0375 x 300 = 86.25 %, above 80: ceil(3 x 86.25 / 70) = 4. b is flat at 60 %, inside the band.
    assert report.decision.smoothed[0] == pytest.approx([86.25, 60.0])
    assert a.writes == [4] and b.writes == []
    assert report.targets[0].reasons & Reason.METRIC_UP and report.ok
    # one range query, for the trend; none for the error rate's `last`
    assert source.ranges == [("cpu", T0 - 1200, T0 - 15, 15)]
    for _ in range(3):  # t+15 .. t+45: the windows are loaded; no more range queries
        clock.advance(15)
        loop.tick(g)
    assert len(source.ranges) == 1 and source.queries == 2 * 4


def test_without_history_the_same_first_tick_sees_one_sample_and_holds():
    loop, g, source, (a, b), _ = setup(values=NOW_VALUES)
    report = loop.tick(g)
    # one sample says nothing about a slope: the trend reads 75 %, inside the band
    assert report.decision.smoothed[0] == pytest.approx([75.0, 60.0])
    assert a.writes == [] and b.writes == []
    assert source.ranges == [("cpu", T0 - 1200, T0 - 15, 15)]  # asked, and answered with no series


# -- when there is no history to read ---------------------------------------------------------------------------

SPIKE = {"cpu": {"a": ramp(T0), "b": 140.0}, "errors": {"a": 0.0, "b": 0.0}}


def first_tick_without_history():
    """What the first tick decides from this tick's readings alone: the control for the cases below."""
    loop, g, _, (a, b), _ = setup(values=SPIKE)
    report = loop.tick(g)
    return report, a.writes, b.writes


def test_failing_range_queries_are_a_warning_and_the_tick_decides_as_without_history(caplog):
    caplog.set_level(logging.INFO, logger="scaler.live.loop")
    loop, g, source, (a, b), _ = setup(values=SPIKE, history=HISTORY)
    source.range_down = True
    report = loop.tick(g)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "policy p: filling the cpu window from history failed; it starts empty" in warnings[0]
    assert "connection refused" in warnings[0]
    assert not any("filled from history" in r.getMessage() for r in caplog.records)
    control, a_writes, b_writes = first_tick_without_history()
    # b: 140 % on 3 -> ceil(3 x 140 / 70) = 6, written; a: 75 % holds, as without history
    assert (a.writes, b.writes) == (a_writes, b_writes) == ([], [6])
    assert [t.reasons for t in report.targets] == [t.reasons for t in control.targets]
    assert np.array_equal(report.decision.smoothed, control.decision.smoothed)
    assert report.ok and "state/p" in loop.store.data


def test_a_history_that_names_none_of_the_targets_fills_nothing_and_says_nothing(caplog):
    caplog.set_level(logging.INFO, logger="scaler.live.loop")
    loop, g, source, (a, b), _ = setup(values=SPIKE, history={"cpu": {"someone-else": ramp}})
    report = loop.tick(g)
    assert len(source.ranges) == 1
    assert [r.getMessage() for r in caplog.records if "history" in r.getMessage()] == []
    control, a_writes, b_writes = first_tick_without_history()
    assert (a.writes, b.writes) == (a_writes, b_writes)
    assert np.array_equal(report.decision.smoothed, control.decision.smoothed)
    cpu = g.state.rings[int(g.params.ring_start[0]) : int(g.params.ring_start[0] + g.params.slots[0])]
    assert list(np.isfinite(cpu).sum(axis=0)) == [1, 1], "only this tick's sample"


def test_a_source_without_range_queries_starts_the_windows_empty(caplog):
    class InstantOnly:
        """A metric source from before range queries: only `query`."""

        def __init__(self, values):
            self.values = values

        def query(self, promql: str, *, by: str, now: float) -> dict[str, float]:
            return dict(self.values.get(promql, {}))

    caplog.set_level(logging.WARNING)
    loop, g, _, (a, b), _ = setup(source=InstantOnly(SPIKE))
    report = loop.tick(g)
    control, a_writes, b_writes = first_tick_without_history()
    assert report.ok and caplog.records == []
    assert (a.writes, b.writes) == (a_writes, b_writes) == ([], [6])
    assert np.array_equal(report.decision.smoothed, control.decision.smoothed)


# -- a restart: the saved state, and history on top -------------------------------------------------------------

ONE_PER_MINUTE = {
    "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 1, "period": 60}]},
    "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
}


def test_a_restart_fills_the_windows_on_top_of_the_saved_state():
    pol = policy(behavior=ONE_PER_MINUTE)
    store, clock, a = MemoryStore(), FakeClock(T0), FakeTarget("a")
    # t+0: the first controller has no history; the error rate (0.2 > 0.05) asks for more, +1 a minute -> 4
    loop, g, source, _, _ = setup(
        pol, [a], values={"cpu": {"a": ramp(T0)}, "errors": {"a": 0.2}}, store=store, clock=clock
    )
    loop.tick(g)
    assert a.writes == [4]
    saved = MemoryStore(dict(store.data))
    clock.advance(15)

    # t+15: restarted, with the history now readable: the trend reads 75.56 + 11.25 = 86.81 % ahead and asks for
    # ceil(4 x 86.81 / 70) = 5, but the saved +1 of t+0 has spent this minute's budget
    values = {"cpu": {"a": ramp(T0 + 15)}, "errors": {"a": 0.0}}
    loop, g, source, _, _ = setup(pol, [a], values=values, history=HISTORY, store=store, clock=clock)
    report = loop.tick(g)
    assert source.ranges == [("cpu", T0 + 15 - 1200, T0, 15)]
    assert report.decision.smoothed[0] == pytest.approx([86.8125])
    assert report.targets[0].reasons & Reason.SCALE_UP_LIMIT and a.writes == [4]

    # the same restart without history: the saved window holds t+0's 75 % of 3 replicas and now 75.56 % of 4, too
    # short a reach for a slope, so it reads their mean load per replica now, (225 + 302.25) / 2 / 4 = 65.9 %
    b = FakeTarget("a", 4)
    other, og, _, _, _ = setup(pol, [b], values=values, store=saved, clock=FakeClock(clock.t))
    held = other.tick(og)
    assert held.decision.smoothed[0] == pytest.approx([(3 * ramp(T0) + 4 * ramp(T0 + 15)) / 2 / 4])
    assert b.writes == [] and not held.targets[0].reasons & Reason.METRIC_UP

    clock.advance(60)  # t+75: the +1 of t+0 is out of the minute
    loop.tick(g)
    assert a.writes == [4, 5] and len(source.ranges) == 1


# -- seasonal ---------------------------------------------------------------------------------------------------

NOON = 1_700_006_400.0 + 12 * 3600  # 2023-11-15 12:00 UTC, a 5-minute bucket's start
RPS = {
    "name": "rps",
    "query": "rps",
    "kind": "gauge",
    "target": 100,
    "window": {"type": "seasonal", "period": "1d", "bucket": "5m"},
}


def daily(t: float) -> float:
    """Requests per second over a day: 300 +- 200, highest at 06:00 UTC."""
    return 300 + 200 * math.sin(2 * math.pi * t / DAY)


def seasonal_records(path):
    return [r for r in read_tail(path) if r["event"] == "seasonal"]


@pytest.mark.parametrize("history", [True, False], ids=["two-days-of-history", "no-history"])
def test_a_seasonal_window_is_in_the_decision_log_once_per_bucket(history, tmp_path):
    log = DecisionLog(tmp_path / "decisions.jsonl")
    pol = policy(metrics=[{**CPU, "window": {"type": "last"}}, RPS])
    clock = FakeClock(NOON + 60)
    values = {"cpu": {"a": 60.0, "b": 60.0}, "rps": {"a": daily(NOON), "b": 2 * daily(NOON)}}
    past = {"rps": {"a": daily, "b": lambda t: 2 * daily(t)}} if history else {}
    loop, g, source, (a, b), _ = setup(pol, values=values, history=past, clock=clock, log=log)
    reports = [loop.tick(g)]
    # one range query, for the seasonal window: a sample in the middle of each 5-minute bucket of the last 2 days
    assert source.ranges == [("rps", NOON - 2 * DAY + 150, NOON - 150, 300)]
    first = seasonal_records(log.path)
    assert [(r["target"], r["metric"], r["policy"]) for r in first] == [("a", "rps", "p"), ("b", "rps", "p")]
    if history:
        # yesterday repeats the day before: it asks, from yesterday's 12:00-12:05 at today's level
        assert all(
            r["asks"]
            and r["correlation"] == pytest.approx(1.0)
            and r["min_correlation"] == 0.5
            and r["level_ratio"] == pytest.approx(1.0)
            for r in first
        )
        assert reports[0].decision.proposals[1] == pytest.approx([3, 6])  # 298 and 596 rps at 100 a replica
        assert b.writes == [6]
    else:
        assert all(not r["asks"] and r["correlation"] is None for r in first)
        assert b.writes == []
    while clock.advance(15) < NOON + 300:  # 12:01:15 .. 12:04:45: the same bucket, nothing more in the log
        loop.tick(g)
    assert len(seasonal_records(log.path)) == 2
    loop.tick(g)  # 12:05:00: a bucket closed, its numbers are new
    later = seasonal_records(log.path)[2:]
    assert [r["target"] for r in later] == ["a", "b"] and [r["asks"] for r in later] == [history, history]
    assert len(source.ranges) == 1
