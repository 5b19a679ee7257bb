"""The decision pipeline: one step per table, then fake-clock scenarios narrated tick by tick."""

import math

import numpy as np
import pytest

from scaler.decision.decide import decide
from scaler.decision.params import params_of
from scaler.decision.reasons import Reason
from scaler.decision.state import initial_state
from tests.conftest import make_policy

NAN = math.nan
T0 = 1_700_000_000.0


class Controller:
    """Drives decide() like the loop does: every decision is written (and committed as written); time
    moves by hand."""

    def __init__(self, policy, replicas, now=T0):
        self.policy = policy
        self.params = params_of(policy)
        self.current = np.array(replicas, dtype=float)
        self.now = now
        self.state = initial_state(self.params, self.current, now)
        self.last = None

    def tick(self, *metric_rows, ready=None, advance=15.0):
        self.now += advance
        obs = np.array(metric_rows, dtype=float).reshape(len(self.policy.metrics), -1)
        d = decide(self.params, self.state, obs, current=self.current, ready=ready, now=self.now)
        written = d.desired.astype(float)
        self.state = d.state.with_applied(self.now, self.current, written)
        self.current, self.last = written, d
        return d

    @property
    def reasons(self):
        return [Reason(int(r)) for r in self.last.reasons]


TWO = [
    {"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 20, "window": {"type": "last"}},
    {"name": "p95", "kind": "latency", "target": 0.5, "scale_up_above": 2.0, "scale_down_below": 0.5,
     "window": {"type": "last"}},
]


@pytest.mark.parametrize(
    "cpu, p95, start, want, reason",
    [
        (85, 0.3, 4, 5, Reason.METRIC_UP),  # ceil(4 * 85 / 70) = 5
        (60, 0.3, 4, 4, Reason.IN_BAND),  # 60 % is inside [20, 80]: hold
        (79, 2.5, 4, 8, Reason.METRIC_UP),  # latency above 2 s: 2.5 / 0.5 = 5x, capped at 2x: ceil(4 * 2) = 8
        (10, 0.3, 4, 3, Reason.METRIC_DOWN),  # all below: max(ceil(4*10/70)=1, ceil(4*0.3/0.5)=3) = 3
        (10, 0.6, 4, 4, Reason.IN_BAND),  # latency 0.6 s is not below 0.5 s: no scale-down
        (NAN, 0.3, 4, 4, Reason.NO_DATA),  # cpu missing, latency low: hold, never scale down
        (NAN, 2.5, 4, 8, Reason.PARTIAL_DATA_UP),  # cpu missing but latency demands more: scale up
        (NAN, NAN, 4, 4, Reason.NO_DATA),
    ],
    ids=["cpu-above-band", "cpu-in-band", "latency-above-band", "all-below-band", "one-metric-in-band",
         "missing-never-scales-down", "missing-but-other-metric-up", "all-missing-holds"],
)
def test_band_step(cpu, p95, start, want, reason):
    c = Controller(make_policy(metrics=TWO, replicas={"min": 1, "max": 20}), [start])
    d = c.tick([cpu], [p95])
    assert d.desired[0] == want
    assert c.reasons[0] & reason


def test_utilization_proposal_scales_from_ready_replicas_not_requested():
    # 8 requested but 4 ready at 100 %: ceil(4 * 100 / 70) = 6 < 8, so nothing more is asked for yet.
    c = Controller(make_policy(), [8])
    d = c.tick([100], ready=np.array([4.0]))
    assert d.desired[0] == 8


def test_gauge_proposal_is_total_over_per_replica_target():
    pol = make_policy(metrics=[{"name": "queue", "kind": "gauge", "target": 100, "window": {"type": "last"}}])
    c = Controller(pol, [2])
    assert c.tick([1250]).desired[0] == 13  # ceil(1250 / 100)


@pytest.mark.parametrize(
    "scale_up, cpu, want, reason",
    [
        ({"stabilization": 0, "policies": [{"type": "pods", "value": 2, "period": 15}]}, 200, 6,
         Reason.SCALE_UP_LIMIT),  # wants ceil(4*200/70)=12, +2 pods per 15 s -> 6
        ({"stabilization": 0, "policies": [{"type": "percent", "value": 50, "period": 15}]}, 200, 6,
         Reason.SCALE_UP_LIMIT),  # +50 % of 4 -> 6
        ({"stabilization": 0, "policies": [{"type": "pods", "value": 2, "period": 15}], "select": "disabled"},
         200, 4, Reason.SCALE_UP_LIMIT),
    ],
    ids=["pods-limit", "percent-limit", "up-disabled"],
)
def test_rate_limit_step(scale_up, cpu, want, reason):
    pol = make_policy(behavior={"scale_up": scale_up,
                                "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 1,
                                                                                 "period": 60}]}})
    c = Controller(pol, [4])
    assert c.tick([cpu]).desired[0] == want
    assert c.reasons[0] & reason


def test_clamp_to_max():
    c = Controller(make_policy(replicas={"min": 1, "max": 6}), [4])
    assert c.tick([300]).desired[0] == 6
    assert c.reasons[0] & Reason.TOO_MANY_REPLICAS


def test_current_outside_bounds_moves_to_bound_without_metrics():
    c = Controller(make_policy(replicas={"min": 3, "max": 6}), [9])
    assert c.tick([NAN]).desired[0] == 6
    assert c.reasons[0] == Reason.OUT_OF_RANGE


def test_down_stabilization_after_restart_holds_for_one_window():
    """Like HPA: the replica count at start counts as a recommendation, so no scale-down for a window."""
    pol = make_policy(behavior={
        "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 4, "period": 15}]},
        "scale_down": {"stabilization": 60, "policies": [{"type": "pods", "value": 10, "period": 15}]}})
    c = Controller(pol, [6])
    # t+15 .. t+45: load has dropped (cpu 20 % asks ceil(6*20/70)=2), but 6 was recommended at t+0.
    for _ in range(3):
        assert c.tick([20]).desired[0] == 6
        assert c.reasons[0] & Reason.SCALE_DOWN_STABILIZED
    # t+60: the start-up recommendation leaves the window (the edge does not count): drop to 2.
    assert c.tick([20]).desired[0] == 2


def test_stabilization_uses_highest_recent_recommendation():
    pol = make_policy(behavior={
        "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 10, "period": 15}]},
        "scale_down": {"stabilization": 45, "policies": [{"type": "pods", "value": 10, "period": 15}]}})
    c = Controller(pol, [4], now=T0 - 1000)  # start long ago so the start-up record is out of the window
    c.now = T0
    assert c.tick([140]).desired[0] == 8  # t+15: ceil(4*140/70) = 8
    assert c.tick([35]).desired[0] == 8  # t+30: asks ceil(8*35/70) = 4, but 8 is 15 s old
    assert c.tick([35]).desired[0] == 8  # t+45: 8 is 30 s old
    assert c.tick([35]).desired[0] == 4  # t+60: 8 is 45 s old - on the edge, out


def test_scale_down_rate_limit_counts_the_whole_period():
    pol = make_policy(behavior={
        "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 10, "period": 15}]},
        "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 1, "period": 60}]}})
    c = Controller(pol, [10])
    assert c.tick([7]).desired[0] == 9  # t+15: asks 1, one pod per 60 s -> 9
    assert c.tick([7]).desired[0] == 9  # t+30: that pod was removed 15 s ago
    assert c.reasons[0] & Reason.SCALE_DOWN_LIMIT
    c.tick([7])  # t+45
    assert c.tick([7]).desired[0] == 9  # t+60: the removal at t+15 is 45 s old
    assert c.tick([7]).desired[0] == 8  # t+75: 60 s later, the next pod may go


def test_cooldowns():
    pol = make_policy(behavior={
        "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 1, "period": 15}],
                     "cooldown": 30},
        "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 5, "period": 15}],
                       "cooldown": 60}})
    c = Controller(pol, [4])
    assert c.tick([140]).desired[0] == 5  # t+15: up by one
    assert c.tick([140]).desired[0] == 5  # t+30: only 15 s after the scale-up
    assert c.reasons[0] & Reason.SCALE_UP_COOLDOWN
    assert c.tick([140]).desired[0] == 6  # t+45: 30 s later, up again
    assert c.tick([10]).desired[0] == 6  # t+60: load gone, but 15 s after a scale action
    assert c.reasons[0] & Reason.SCALE_DOWN_COOLDOWN
    c.tick([10]), c.tick([10])  # t+75, t+90
    assert c.tick([10]).desired[0] == 1  # t+105: 60 s after the last scale action


def test_no_cooldown_means_none_even_when_the_last_action_is_ahead_of_this_clock():
    """A state saved by a controller whose clock ran ahead (an HA hand-over, or the clock stepped back):
    with cooldowns of 0 the decision still scales both ways; with a cooldown it waits."""
    c = Controller(make_policy(), [4, 10])
    ahead = np.full(2, T0 + 3600.0)
    c.state = c.state._replace(last_up=ahead, last_change=ahead.copy())
    assert c.tick([140, 10]).desired.tolist() == [8, 2]
    cooled = make_policy(behavior={
        "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}], "cooldown": 30},
        "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}],
                       "cooldown": 30}})
    c = Controller(cooled, [4, 10])
    c.state = c.state._replace(last_up=ahead.copy(), last_change=ahead.copy())
    assert c.tick([140, 10]).desired.tolist() == [4, 10]
    assert c.reasons[0] & Reason.SCALE_UP_COOLDOWN and c.reasons[1] & Reason.SCALE_DOWN_COOLDOWN


# ---- decide proposes, the caller commits what it wrote

RATE_LIMITED = {
    "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 4, "period": 60}], "cooldown": 30},
    "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
}


def _decide(c: Controller, *rows):
    """One decision that is not applied yet: (decision, its time)."""
    c.now += 15.0
    obs = np.array(rows, dtype=float).reshape(len(c.policy.metrics), -1)
    return decide(c.params, c.state, obs, current=c.current, now=c.now), c.now


def test_a_write_that_failed_is_not_a_scale_event():
    """Reproduces a target held at 4 for a whole rate-limit period by one AccessDenied: the decision
    to go 4 -> 8 was never written, so neither the +4 per 60 s limit nor the cooldown may count it."""
    c = Controller(make_policy(behavior=RATE_LIMITED), [4])
    d, now = _decide(c, [140])  # t+15: 140 % asks for 8; the limit allows +4 -> 8
    assert d.desired[0] == 8
    c.state = d.state.with_applied(now, c.current, np.array([np.nan]))  # the write failed
    assert np.all(np.nan_to_num(c.state.up_v) == 0) and np.isnan(c.state.last_up[0])
    # t+30: the same load, and nothing was added in the last 60 s: 8 again, no limit and no cooldown
    d, now = _decide(c, [140])
    assert d.desired[0] == 8 and not d.reasons[0] & (Reason.SCALE_UP_LIMIT | Reason.SCALE_UP_COOLDOWN)


def test_the_count_written_is_what_counts_not_the_count_decided():
    """The provider clamped 4 -> 8 to 6 (an ASG's MaxSize): the period holds +2, so 15 s later the
    +4 per 60 s limit still allows 2 more (8), and the cooldown runs from the write."""
    c = Controller(make_policy(behavior=RATE_LIMITED), [4])
    d, now = _decide(c, [140])
    c.state = d.state.with_applied(now, c.current, np.array([6.0]))
    assert np.nansum(c.state.up_v) == 2 and c.state.last_up[0] == now
    c.current = np.array([6.0])
    d, _ = _decide(c, [140])  # t+30: 140 % of 6 asks for 12; the limit allows 4 + 4 = 8 ...
    assert d.steps.up_limit[0] == 8
    assert d.desired[0] == 6 and d.reasons[0] & Reason.SCALE_UP_COOLDOWN  # ... but 15 s < 30 s cooldown


def test_a_decision_nobody_writes_changes_no_clock():
    """A dry run decides every tick and writes nothing: each tick proposes the same scale-up afresh."""
    c = Controller(make_policy(behavior=RATE_LIMITED), [4])
    for _ in range(5):
        d, now = _decide(c, [140])
        assert d.desired[0] == 8 and d.reasons[0] == Reason.METRIC_UP
        c.state = d.state.with_applied(now, c.current, np.full(1, np.nan))


def test_fallback_raises_after_threshold_and_never_lowers():
    pol = make_policy(fallback={"failure_threshold": 3, "replicas": 6})
    c = Controller(pol, [4])
    assert c.tick([NAN]).desired[0] == 4  # blind 1
    assert c.tick([NAN]).desired[0] == 4  # blind 2
    assert c.tick([NAN]).desired[0] == 6  # blind 3: fall back to 6
    assert c.reasons[0] & Reason.FALLBACK
    c2 = Controller(pol, [9])
    for _ in range(4):
        assert c2.tick([NAN]).desired[0] == 9  # fallback 6 < current 9: hold, never lower


def test_panic_bursts_past_rate_limit_and_blocks_scale_down():
    pol = make_policy(
        panic={"threshold": 2.0, "window": 15, "hold": 60},
        behavior={"scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 1, "period": 15}]},
                  "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 10, "period": 15}]}})
    c = Controller(pol, [4])
    # t+15: 150 % is over 2 x 70 %: panic, straight to ceil(4 * 150 / 70) = 9 despite +1 pod per 15 s.
    assert c.tick([150]).desired[0] == 9
    assert c.reasons[0] & Reason.PANIC
    # t+30..t+60: the burst is over (10 %), but panic holds for 60 s: no scale-down.
    for _ in range(3):
        assert c.tick([10]).desired[0] == 9
    c.tick([10])  # t+75: panic ends after its hold
    assert c.tick([10]).desired[0] < 9


def test_targets_decide_independently_and_match_one_at_a_time():
    pol = make_policy(metrics=TWO)
    rows_cpu = [[85, 10, NAN, 60], [90, 10, 30, 200], [40, 5, 30, 10]]
    rows_p95 = [[0.3, 0.3, 0.3, 2.5], [0.3, 0.1, NAN, 0.3], [0.3, 0.1, 0.1, 0.1]]
    together = Controller(pol, [4, 6, 5, 3])
    for cpu, p95 in zip(rows_cpu, rows_p95, strict=True):
        together.tick(cpu, p95)
    for j, start in enumerate([4, 6, 5, 3]):
        alone = Controller(pol, [start])
        for cpu, p95 in zip(rows_cpu, rows_p95, strict=True):
            alone.tick([cpu[j]], [p95[j]])
        assert alone.current[0] == together.current[j]
        assert alone.last.reasons[0] == together.last.reasons[j]


def test_latency_far_above_target_asks_for_at_most_double_the_ready_replicas():
    # A saturated replica's p95 sits at its timeout: 10 s against 0.5 s would ask ceil(3 * 20) = 60.
    pol = make_policy(metrics=[{"name": "p95", "kind": "latency", "target": 0.5, "scale_up_above": 2.0,
                                "scale_down_below": 0.5, "window": {"type": "last"}}])
    c = Controller(pol, [3])
    assert c.tick([10.0]).desired[0] == 6
    # Still no newer reading from the 3 that serve: the ask stays 6, no further climb.
    assert c.tick([10.0], ready=np.array([3.0])).desired[0] == 6


def test_utilization_windows_average_load_not_percentages():
    # 100 % on 3 replicas then 90 % on 5: 3 and 4.5 replicas of work; the 30 s mean is 3.75 of work,
    # which on 5 serving replicas reads 75 % (a plain mean of the percentages would say 95 %).
    pol = make_policy(metrics=[{"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50,
                                "window": {"type": "mean", "length": 30}}])
    c = Controller(pol, [5])
    c.tick([100], ready=np.array([3.0]))
    d = c.tick([90], ready=np.array([5.0]))
    assert d.smoothed[0, 0] == pytest.approx(75.0)
    assert d.desired[0] == 5  # 75 % is inside the band: hold


CPU_AND_TREND = [
    {"name": "cpu", "target": 70, "scale_up_above": 80, "scale_down_below": 50, "window": {"type": "last"}},
    # The same CPU read through a trend window: where the line through the last 45 s will be in 90 s.
    {"name": "cpu_trend", "target": 70, "scale_up_above": 80, "scale_down_below": 50,
     "window": {"type": "trend", "length": 45, "lead": 90}},
]


def test_trend_metric_scales_up_before_the_value_leaves_the_band():
    c = Controller(make_policy(metrics=CPU_AND_TREND), [4])
    assert c.tick([60], [60]).desired[0] == 4  # t+15: one sample, a flat line at 60 %: in the band
    # t+30: 65 % is still in the band, but +5 % per 15 s reads 65 + 30 = 95 % in 90 s: ceil(4 * 95 / 70) = 6
    d = c.tick([65], [65])
    assert d.smoothed[:, 0] == pytest.approx([65, 95])
    assert d.desired[0] == 6
    assert c.reasons[0] & Reason.METRIC_UP


def test_falling_trend_never_takes_the_count_below_what_the_current_value_asks():
    c = Controller(make_policy(metrics=CPU_AND_TREND), [6])
    assert c.tick([50], [50]).desired[0] == 6  # t+15: 50 % is not below 50 %: hold
    # t+30: 40 % asks ceil(6 * 40 / 70) = 4; the line falls 10 % per 15 s, past zero within 90 s, and
    # reads 0 %, which asks for nothing. The highest ask wins: 4.
    d = c.tick([40], [40])
    assert d.smoothed[:, 0] == pytest.approx([40, 0])
    assert d.desired[0] == 4
