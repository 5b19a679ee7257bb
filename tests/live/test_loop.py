"""The control loop with fakes of its own interfaces and a fake clock: what it reads, decides and writes."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from scaler.clock import FakeClock
from scaler.decision.reasons import Reason
from scaler.live.decisionlog import DecisionLog, read_tail
from scaler.live.health import HealthRule
from scaler.live.loop import Group, Loop
from scaler.live.metrics import LoopMetrics
from scaler.retry import RetryPolicy
from scaler.store.sqlite import SqliteStore
from tests.conftest import make_policy
from tests.support.fake_live import FakeLease, FakeSource, FakeTarget, MemoryStore, denied, throttled

CPU = {"name": "cpu", "query": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50,
       "window": {"type": "last"}}
ERRORS = {"name": "errors", "query": "errors", "kind": "error_rate", "target": 0.01, "scale_up_above": 0.05,
          "scale_down_below": 0.01, "window": {"type": "last"}}


def policy(**over):
    return make_policy(**{"metrics": [CPU], "replicas": {"min": 1, "max": 20}, "interval": 15, **over})


def setup(pol=None, targets=None, *, cpu=None, lease=None, store=None, dry_run=False, rules=(), log=None,
          clock=None):
    pol = pol or policy()
    targets = targets or [FakeTarget("a"), FakeTarget("b")]
    clock = clock or FakeClock()
    source = FakeSource({"cpu": dict(cpu or {})})
    group = Group(policy=pol, target_label="service", labels=tuple(t.name for t in targets), targets=tuple(targets))
    group.bind(rules)
    loop = Loop([group], source=source, store=store or MemoryStore(), lease=lease or FakeLease(), clock=clock,
                retry=RetryPolicy(attempts=5, initial=0.01, max_delay=0.05, jitter=0), dry_run=dry_run,
                decisions=log, workers=4)
    return loop, group, source, targets, clock


def test_writes_only_the_targets_whose_count_changes():
    loop, g, _, (a, b), _ = setup(cpu={"a": 140, "b": 60})
    report = loop.tick(g)
    # a: 140 % on 3 against 70 -> ceil(3 * 140 / 70) = 6; b: 60 % is inside the 50-80 band -> hold 3.
    assert a.writes == [6] and b.writes == []
    assert [t.desired for t in report.targets] == [6, 3]
    assert report.targets[0].written and not report.targets[1].written
    assert report.ok


def test_a_target_missing_from_the_results_holds_and_never_scales_down():
    loop, g, source, (a, b), clock = setup(cpu={"a": 10, "b": 10}, targets=[FakeTarget("a", 8), FakeTarget("b", 8)])
    source.values["cpu"] = {"b": 10}  # a's series is gone
    report = loop.tick(g)
    assert a.writes == []  # 10 % would ask for 2, but a has no data: hold at 8
    assert report.targets[0].reasons & Reason.NO_DATA
    assert b.writes == [2]  # b has data: ceil(8 * 10 / 70) = 2


def test_a_dead_metric_source_holds_every_target_and_readiness_fails():
    loop, g, source, (a, b), clock = setup(cpu={"a": 10, "b": 10}, targets=[FakeTarget("a", 8), FakeTarget("b", 8)])
    assert loop.tick(g).ok and loop.ready() == (True, "ok")
    a.desired = b.desired = 8  # undo: someone scaled them back up by hand
    source.down = True
    for _ in range(4):
        clock.advance(15)
        report = loop.tick(g)
        assert report.query_errors and a.writes == [2] and b.writes == [2]
    # t+60 s without a successful tick: more than 3 intervals (45 s)
    ok, why = loop.ready()
    assert not ok and "p" in why
    source.down = False
    clock.advance(15)
    assert loop.tick(g).ok and loop.ready()[0]


def test_a_target_that_cannot_be_read_is_held_while_the_others_proceed():
    a = FakeTarget("a", fail_reads=[denied()])
    loop, g, _, (a, b), _ = setup(cpu={"a": 140, "b": 140}, targets=[a, FakeTarget("b")])
    report = loop.tick(g)
    assert a.writes == [] and b.writes == [6]
    assert report.targets[0].error.startswith("read failed") and report.targets[0].current is None


def test_throttled_writes_are_retried_and_land_exactly_once():
    a = FakeTarget("a", fail_writes=[throttled(), throttled(), throttled()])
    loop, g, _, (a, b), _ = setup(cpu={"a": 140, "b": 60}, targets=[a, FakeTarget("b")])
    report = loop.tick(g)
    assert a.write_calls == 4 and a.writes == [6]
    assert report.ok


def test_a_permanent_error_is_reported_and_does_not_stop_other_targets():
    a = FakeTarget("a", fail_writes=[denied()])
    loop, g, _, (a, b), _ = setup(cpu={"a": 140, "b": 140}, targets=[a, FakeTarget("b")])
    report = loop.tick(g)
    assert a.write_calls == 1 and a.writes == []  # permanent: no retry
    assert "AccessDenied" in report.targets[0].error and not report.ok
    assert b.writes == [6]


def test_dry_run_decides_but_never_writes_and_keeps_its_own_records():
    store = MemoryStore()
    loop, g, _, (a, b), _ = setup(cpu={"a": 140, "b": 10}, dry_run=True, store=store)
    report = loop.tick(g)
    assert a.write_calls == b.write_calls == 0
    assert [t.desired for t in report.targets] == [6, 1]
    assert sorted(store.data) == ["dry-run/decisions/p", "dry-run/state/p"]


def test_provider_bounds_clamp_the_write():
    loop, g, _, (a,), _ = setup(cpu={"a": 140}, targets=[FakeTarget("a", 3, max=4)])
    loop.tick(g)
    assert a.writes == [4]  # the policy allows 6, the group's own MaxSize is 4


# A scale-up limit of +4 pods per 60 s: what the tick records decides what the next tick may do.
LIMITED = {"scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 4, "period": 60}]},
           "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]}}


def test_a_write_that_failed_does_not_rate_limit_the_next_tick():
    """One AccessDenied used to hold a target at 4 for a whole minute with SCALE_UP_LIMIT: the +4 that was
    never written counted against the limit. Only a successful write is a scale event (as in HPA)."""
    a = FakeTarget("a", 4, fail_writes=[denied()])
    loop, g, _, (a,), clock = setup(policy(behavior=LIMITED), [a], cpu={"a": 140})
    report = loop.tick(g)  # t+0: 140 % of 4 asks for 8, the limit allows 4 + 4 = 8; the write is denied
    assert a.writes == [] and report.targets[0].desired == 8 and not report.targets[0].written
    clock.advance(15)
    report = loop.tick(g)  # t+15: nothing was added in the last minute, so 8 again, and it lands
    assert a.writes == [8]
    assert not report.targets[0].reasons & Reason.SCALE_UP_LIMIT


def test_a_write_the_provider_clamped_counts_what_was_written():
    """The group's MaxSize 6 turned 4 -> 8 into 4 -> 6: the period holds +2, so when MaxSize is raised 15 s
    later the limit still allows +2 more (8), not nothing."""
    a = FakeTarget("a", 4, max=6)
    loop, g, _, (a,), clock = setup(policy(behavior=LIMITED), [a], cpu={"a": 140})
    loop.tick(g)
    assert a.writes == [6]
    a.max = None
    clock.advance(15)
    report = loop.tick(g)  # 140 % of 6 asks for 12; the period began at 4: 4 + 4 = 8
    assert a.writes == [6, 8] and report.targets[0].reasons & Reason.SCALE_UP_LIMIT


def test_a_dry_run_never_counts_its_proposals_as_scale_events():
    loop, g, _, (a,), clock = setup(policy(behavior=LIMITED), [FakeTarget("a", 4)], cpu={"a": 140}, dry_run=True)
    for _ in range(4):
        report = loop.tick(g)
        assert report.targets[0].desired == 8 and report.targets[0].reasons == Reason.METRIC_UP
        clock.advance(15)
    assert a.write_calls == 0 and np.all(np.nan_to_num(g.state.up_v) == 0)


def test_a_follower_neither_reads_nor_writes_and_reloads_state_when_it_leads():
    lease = FakeLease(leader=False)
    store = MemoryStore()
    loop, g, source, (a, b), clock = setup(cpu={"a": 140, "b": 140}, lease=lease, store=store)
    report = loop.tick(g)
    assert not report.leader and source.queries == 0 and a.writes == []
    lease.leader = True
    clock.advance(15)
    loop.tick(g)
    assert a.writes == [6] and "state/p" in store.data and "decisions/p" in store.data
    lease.leader = False
    clock.advance(15)
    loop.tick(g)
    assert g.state is None  # dropped: the next leader's saved state is the truth


def test_restart_with_saved_state_keeps_cooldowns_rate_limits_and_windows():
    pol = policy(
        metrics=[{**CPU, "window": {"type": "mean", "length": "60s"}}],
        behavior={
            "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 2, "period": "60s"}]},
            "scale_down": {"stabilization": 0, "policies": [{"type": "percent", "value": 100, "period": 15}],
                           "cooldown": "5m"},
        },
    )
    store = MemoryStore()
    clock = FakeClock()
    a = FakeTarget("a", 4)

    def controller():
        loop, g, source, _, _ = setup(pol, [a], cpu={"a": 140}, store=store, clock=clock)
        return loop, g, source

    loop, g, source = controller()
    loop.tick(g)  # t+0: 140 % on 4 asks for 8; +2 pods per 60 s -> 6
    assert a.writes == [6]
    clock.advance(15)
    # t+15: the controller restarts. Its saved state remembers the +2 of t+0 (rate limit) and the mean window.
    loop, g, source = controller()
    loop.tick(g)
    assert a.writes == [6], "the rate-limit budget of the last 60 s was already spent"
    # A fresh state (nothing saved) would have allowed another +2 at once:
    fresh_clock = FakeClock(clock.t)
    b = FakeTarget("b", 6)
    fresh, fg, _, _, _ = setup(pol, [b], cpu={"b": 140}, clock=fresh_clock)
    fresh.tick(fg)
    assert b.writes == [8]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_restart_keeps_the_scale_down_cooldown(backend, tmp_path):
    pol = policy(behavior={
        "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
        "scale_down": {"stabilization": 0, "policies": [{"type": "percent", "value": 100, "period": 15}],
                       "cooldown": "5m"},
    })
    store = MemoryStore() if backend == "memory" else SqliteStore(tmp_path / "state.db")
    clock, a = FakeClock(), FakeTarget("a", 3)
    loop, g, source, _, _ = setup(pol, [a], cpu={"a": 140}, store=store, clock=clock)
    loop.tick(g)  # t+0: up to 6
    clock.advance(60)
    loop, g, source, _, _ = setup(pol, [a], cpu={"a": 10}, store=store, clock=clock)
    report = loop.tick(g)  # t+60 after a restart: 10 % asks for 1, but the 5-minute cooldown still runs
    assert a.writes == [6] and report.targets[0].reasons & Reason.SCALE_DOWN_COOLDOWN
    clock.advance(300)
    loop.tick(g)  # t+360: cooldown over
    assert a.writes == [6, 1]


def test_saved_state_of_another_target_list_is_matched_by_name():
    store, clock = MemoryStore(), FakeClock()
    loop, g, *_ = setup(cpu={"a": 60, "b": 60}, store=store, clock=clock)
    loop.tick(g)
    clock.advance(15)
    c, a = FakeTarget("c"), FakeTarget("a")
    loop, g, *_ = setup(cpu={"a": 140, "c": 140}, targets=[c, a], store=store, clock=clock)
    report = loop.tick(g)
    assert [t.desired for t in report.targets] == [6, 6]


def test_health_rule_fires_once_with_evidence_after_its_duration_and_resolves():
    pol = policy(metrics=[CPU, ERRORS])
    rule = HealthRule.model_validate({"name": "rollback", "metric": "errors", "above": 0.05, "for": "1m",
                                      "labels": {"action": "rollback"}})
    seen = []
    loop, g, source, (a, b), clock = setup(pol, cpu={"a": 60, "b": 60}, rules=[rule])
    loop.on_event = seen.append
    source.values["errors"] = {"a": 0.2, "b": 0.0}
    for t in range(5):  # t+0 .. t+60: true since t+0; fires at t+60
        report = loop.tick(g)
        assert [e.status for e in report.events] == (["firing"] if t == 4 else [])
        clock.advance(15)
    (event,) = seen
    assert (event.rule.name, event.policy, event.target, event.since) == ("rollback", "p", "a", clock.t - 75)
    assert "errors 0.2" in event.evidence and "> 0.05" in event.evidence
    source.values["errors"] = {"a": 0.0, "b": 0.0}
    report = loop.tick(g)
    assert [(e.status, e.target, e.since) for e in report.events] == [("resolved", "a", event.since)]


def test_every_decision_goes_to_the_audit_log(tmp_path):
    log = DecisionLog(tmp_path / "decisions.jsonl")
    loop, g, *_ = setup(cpu={"a": 140}, targets=[FakeTarget("a")], log=log)
    loop.tick(g)
    (rec,) = read_tail(tmp_path / "decisions.jsonl")
    assert rec["target"] == "a" and rec["current"] == 3 and rec["desired"] == 6 and rec["written"]
    assert rec["reasons"] == ["METRIC_UP"] and rec["observed"] == {"cpu": 140.0}
    assert json.loads(loop.store.load("decisions/p"))["targets"][0]["desired"] == 6


def test_run_ticks_on_the_interval_and_a_slow_tick_skips_slots():
    clock = FakeClock()
    loop, g, source, (a, b), _ = setup(cpu={"a": 60, "b": 60}, clock=clock)
    times: list[float] = []
    stop = threading.Event()
    real_tick = loop.tick

    def tick(group):
        times.append(clock.now())
        if len(times) == 2:
            clock.advance(40)  # this tick takes 40 s
        if len(times) == 4:
            stop.set()
        return real_tick(group)

    loop.tick = tick
    loop.run(stop, wait=lambda s: (clock.advance(s), stop.is_set())[1])
    t0 = times[0]
    # t+0, t+15 (runs until t+55), then the next free slot t+60 (not t+30 or t+45), t+75
    assert [t - t0 for t in times] == [0, 15, 60, 75]


@pytest.mark.parametrize("n", [1, 1000])
def test_one_tick_reads_each_metric_once_for_all_targets(n):
    pol = policy(metrics=[CPU, ERRORS])
    targets = [FakeTarget(f"t{i}") for i in range(n)]
    loop, g, source, _, _ = setup(pol, targets, cpu={f"t{i}": 60.0 for i in range(n)})
    source.values["errors"] = {f"t{i}": 0.0 for i in range(n)}
    loop.tick(g)
    assert source.queries == 2
    assert np.all(g.state.blind == 0)


# -- readings that cannot be load ------------------------------------------------------------------------------

class RawSource(FakeSource):
    """Answers exactly what it holds, infinities included: an exporter's value passed through unfiltered."""

    def query(self, promql: str, *, by: str, now: float) -> dict[str, float]:
        self.queries += 1
        return dict(self.values.get(promql, {}))


# (metric, absurd reading for target a, a sane reading for target b)
ABSURD = [
    (CPU, 1e308, 60.0),  # was 5 -> 50, then every tick failed writing the decision log
    (CPU, -10.0, 60.0),  # was 5 -> 1, the minimum
    (CPU, float("inf"), 60.0),
    (CPU, float("-inf"), 60.0),
    (CPU, 1e16, 60.0),  # above the utilization ceiling of 1e15
    (ERRORS, 1.5, 0.02),  # an error rate is a fraction
    (ERRORS, -0.1, 0.02),
]


@pytest.mark.parametrize("metric, value, sane", ABSURD, ids=["1e308", "-10", "inf", "-inf", "1e16", "errors 1.5",
                                                               "errors -0.1"])
def test_a_reading_outside_its_kind_range_is_no_data_held_logged_and_counted(metric, value, sane, tmp_path, caplog):
    registry = CollectorRegistry()
    log = DecisionLog(tmp_path / "decisions.jsonl")
    pol = policy(metrics=[metric], replicas={"min": 1, "max": 50})
    a, b = FakeTarget("a", 5), FakeTarget("b", 5)
    loop, g, _, _, clock = setup(pol, [a, b], log=log)
    loop.source = RawSource({metric["query"]: {"a": value, "b": sane}})
    loop.telemetry.metrics = LoopMetrics(registry)
    caplog.set_level(logging.WARNING, logger="scaler.live.telemetry")
    for _ in range(3):  # t+0, t+15, t+30: every tick completes and holds a
        report = loop.tick(g)
        assert report.targets[0].desired == 5 and report.targets[0].reasons & Reason.NO_DATA
        assert not report.targets[1].reasons & Reason.NO_DATA  # b's reading is data: a's costs only a
        clock.advance(15)
    assert a.write_calls == 0
    records = [r for r in read_tail(tmp_path / "decisions.jsonl", 10) if r["target"] == "a"]
    assert len(records) == 3 and all(r["observed"] == {metric["name"]: None} for r in records)
    warnings = [r.getMessage() for r in caplog.records if "outside" in r.getMessage()]
    assert len(warnings) == 3 and f"policy p: metric {metric['name']}: 1 reading(s)" in warnings[0]
    assert f"a={value:g}" in warnings[0] and "b=" not in warnings[0]
    assert registry.get_sample_value("scaler_metric_rejected_total",
                                     {"policy": "p", "metric": metric["name"]}) == 3


def test_readings_at_the_edges_of_the_range_are_data():
    pol = policy(metrics=[CPU, ERRORS], replicas={"min": 1, "max": 50})
    a, b = FakeTarget("a", 5), FakeTarget("b", 5)
    loop, g, _, _, _ = setup(pol, [a, b])
    loop.source = RawSource({"cpu": {"a": 0.0, "b": 60.0}, "errors": {"a": 0.0, "b": 1.0}})
    report = loop.tick(g)
    # a: 0 % CPU and no errors ask for 1; b: every request failing (1.0) is a reading, and it scales b up
    assert a.writes == [1] and b.writes and b.writes[0] > 5
    assert not any(t.reasons & Reason.NO_DATA for t in report.targets)



def test_a_noisy_max_reports_its_noise_on_metrics_and_in_the_audit_log(tmp_path):
    """A max window with noisy_length: its noise figure (mean change over mean level) per target is a gauge and a
    field of each decision record, from the decision's own numbers; a policy without one has neither."""
    registry = CollectorRegistry()
    log = DecisionLog(tmp_path / "decisions.jsonl")
    noisy = {**CPU, "window": {"type": "max", "length": "30s", "noisy_length": "5m"}}
    loop, g, source, _, clock = setup(policy(metrics=[noisy]), [FakeTarget("a", 4), FakeTarget("b", 4)], log=log)
    loop.telemetry.metrics = LoopMetrics(registry)
    for k in range(6):  # a swings between 20 and 60 % every tick, b holds 60 % (in its band: 4 replicas)
        source.values["cpu"] = {"a": 20.0 if k % 2 else 60.0, "b": 60.0}
        report = loop.tick(g)
        clock.advance(15)
    last = {r["target"]: r for r in read_tail(tmp_path / "decisions.jsonl", 2)}
    gauge = {t: registry.get_sample_value("scaler_window_noise", {"policy": "p", "target": t, "metric": "cpu"})
             for t in ("a", "b")}
    assert gauge["a"] == report.decision.steps.noise[0, 0] and gauge["a"] > 0.25 and gauge["b"] == 0.0
    assert last["a"]["noise"] == {"cpu": round(gauge["a"], 6)} and last["b"]["noise"] == {"cpu": 0.0}

    plain = CollectorRegistry()
    loop, g, *_ = setup(cpu={"a": 50}, targets=[FakeTarget("a")], log=DecisionLog(tmp_path / "plain.jsonl"))
    loop.telemetry.metrics = LoopMetrics(plain)
    loop.tick(g)
    (rec,) = read_tail(tmp_path / "plain.jsonl")
    assert "noise" not in rec
    assert plain.get_sample_value("scaler_window_noise", {"policy": "p", "target": "a", "metric": "cpu"}) is None
