"""HPA `behavior` steps, table by table against the Kubernetes controller's own tests (horizontal_test.go)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler.decision.decide import decide
from scaler.decision.params import params_of
from scaler.decision.reasons import Reason
from scaler.decision.state import EVENTS, State, initial_state
from scaler.decision.steps import History, rate_limit, scale_down_limit, scale_up_limit, stabilize
from scaler.policy.model import Behavior, Direction, RatePolicy, default_scale_down, default_scale_up
from tests.conftest import make_policy

NOW = 10_000.0
SLOTS = 32


def history(*per_target: list[tuple[float, float]], slots: int = SLOTS) -> History:
    """A History for len(per_target) targets from (seconds ago, value) pairs; one slot per distinct time."""
    h = History.empty(len(per_target), slots)
    ages = sorted({age for events in per_target for age, _ in events}, reverse=True)
    for age in ages:
        row = [sum(v for a, v in events if a == age) for events in per_target]
        h = h.push(NOW - age, np.array(row, dtype=float))
    return h


def uniform(changes: list[int], period: int) -> list[tuple[float, float]]:
    """generateEventsUniformDistribution: each event at the centre of its share of the last `period` s,
    whole seconds as Go's Duration conversion leaves them. [1, 5, 9] over 120 s -> 100, 60, 20 s ago."""
    segment = period / len(changes)
    return [(float(int(period - segment * (i + 1) + segment / 2)), float(c)) for i, c in enumerate(changes)]


def rules(pods: int, pods_period: int, percent: int, percent_period: int, window: int) -> Direction:
    """generateScalingRules: select Max, a Pods and/or a Percent policy, a stabilization window."""
    policies = []
    if pods:
        policies.append(RatePolicy(type="pods", value=pods, period=pods_period))
    if percent:
        policies.append(RatePolicy(type="percent", value=percent, period=percent_period))
    return Direction(stabilization=window, policies=policies, select="max")


def one(x: float) -> np.ndarray:
    return np.array([x], dtype=float)


# --- TestScalingWithRules (convertDesiredReplicasWithBehaviorRate) -----------------------------------

OK = 0
UP, MANY = int(Reason.SCALE_UP_LIMIT), int(Reason.TOO_MANY_REPLICAS)
DOWN, FEW = int(Reason.SCALE_DOWN_LIMIT), int(Reason.TOO_FEW_REPLICAS)

# (id, up events, down events, min, max, scaleUp rules, scaleDown rules, current, desired, expected, reason)
SCALING_WITH_RULES = [
    ("prenormalized desired replicas within range", [], [], 3, 8, None, None, 5, 7, 7, OK),
    ("prenormalized desired replicas < minReplicas", [], [], 2, 8, None, None, 3, 1, 2, FEW),
    ("within range when minReplicas is 0", [], [], 0, 10, None, None, 1, 0, 0, OK),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", [], [], 1, 10, None, None, 20, 1000, 10,
     MANY),
    ("desired replica count is more than the maximum replica count", [], [], 100, 150, None, None, 100, 1000,
     150, MANY),
    ("scaleUpLimit < maxReplicas with user policies", [], [], 1, 2000, rules(0, 0, 1, 60, 0), None, 3, 1000,
     4, UP),
    ("scaleDownLimit > minReplicas with user defined policies", [], [], 3, 2000, None, rules(20, 60, 0, 0, 0),
     1000, 3, 980, DOWN),
    ("scaleUp with default behavior", [], [], 1, 1000, None, None, 10, 50, 20, UP),
    ("scaleUp with pods policy larger than percent policy", [], [], 1, 1000, rules(100, 60, 100, 60, 0), None,
     10, 500, 110, UP),
    ("scaleUp with percent policy larger than pods policy", [], [], 1, 1000, rules(2, 60, 100, 60, 0), None,
     10, 500, 20, UP),
    ("scaleUp with spec MaxReplicas limitation with large pod policy", [], [], 1, 1000,
     rules(100, 60, 0, 0, 0), None, 10, 50, 50, OK),
    ("scaleUp with spec MaxReplicas limitation with large percent policy", [], [], 1, 1000,
     rules(10000, 60, 0, 0, 0), None, 10, 50, 50, OK),
    ("scaleUp with pod policy limitation", [], [], 1, 1000, rules(30, 60, 0, 0, 0), None, 10, 50, 40, UP),
    ("scaleUp with percent policy limitation", [], [], 1, 1000, rules(0, 0, 200, 60, 0), None, 10, 50, 30,
     UP),
    ("scaleDown with percent policy larger than pod policy", [], [], 1, 1000, None, rules(20, 60, 1, 60, 300),
     100, 2, 80, DOWN),
    ("scaleDown with pod policy larger than percent policy", [], [], 1, 1000, None, rules(2, 60, 1, 60, 300),
     100, 2, 98, DOWN),
    ("scaleDown with spec MinReplicas limitation with large pod policy", [], [], 1, 1000, None,
     rules(100, 60, 0, 0, 300), 10, 0, 1, FEW),
    ("scaleDown with spec MinReplicas limitation with large percent policy", [], [], 5, 1000, None,
     rules(0, 0, 100, 60, 300), 10, 2, 5, FEW),
    ("scaleDown with pod policy limitation", [], [], 1, 1000, None, rules(5, 60, 0, 0, 300), 10, 2, 5, DOWN),
    ("scaleDown with percent policy limitation", [], [], 1, 1000, None, rules(0, 0, 50, 60, 300), 10, 5, 5,
     OK),
    ("scaleUp with MaxReplicas limitation with large pod policy and events", uniform([1, 5, 9], 120), [], 1,
     200, rules(300, 60, 0, 0, 0), None, 100, 500, 200, MANY),
    ("scaleUp with MaxReplicas limitation with large percent policy and events", uniform([1, 5, 9], 120), [],
     1, 200, rules(0, 0, 10000, 60, 0), None, 100, 500, 200, MANY),
    # 120 s ago there were 100 - 15 = 85; +5 allows 90 < 100: the limit never goes below current.
    ("scaleUp with currentReplicas limitation with a lot of recent scale up events", uniform([1, 5, 9], 120),
     [], 1, 1000, rules(5, 120, 0, 0, 0), None, 100, 500, 100, UP),
    ("scaleUp with pod policy and previous scale up events", uniform([1, 5, 9], 120), [], 1, 1000,
     rules(150, 120, 0, 0, 0), None, 100, 500, 235, UP),
    ("scaleUp with percent policy and previous scale up events", uniform([1, 5, 9], 120), [], 1, 1000,
     rules(0, 0, 200, 120, 0), None, 100, 500, 255, UP),
    # periodStart = 6 - 4 + 2 = 4; +300 % -> 16.
    ("scaleUp with percent policy and previous scale up and down events", uniform([4], 120),
     uniform([2], 120), 1, 1000, rules(0, 0, 300, 300, 0), None, 6, 24, 16, UP),
    ("scaleDown with default policy and previous events", [], uniform([1, 5, 9], 120), 1, 1000, None, None,
     10, 5, 5, OK),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", [],
     uniform([1, 5, 9], 120), 1, 1000, None, rules(115, 120, 0, 0, 300), 100, 0, 1, FEW),
    ("scaleDown with spec MinReplicas limitation with large pod policy and previous events", [],
     uniform([1, 5, 9], 120), 5, 1000, None, rules(130, 120, 0, 0, 300), 100, 0, 5, FEW),
    ("scaleDown with spec MinReplicas limitation with large percent policy and previous events", [],
     uniform([1, 5, 9], 120), 5, 1000, None, rules(0, 0, 100, 120, 300), 100, 2, 5, FEW),
    # periodStart 100 + 15 = 115, -5 allows 110 > 100: the limit never goes above current.
    ("scaleDown with pod policy limitation and previous events", [], uniform([1, 5, 9], 120), 1, 1000, None,
     rules(5, 120, 0, 0, 300), 100, 2, 100, DOWN),
    ("scaleDown with percent policy limitation and previous events", [], uniform([2, 4, 6], 120), 1, 1000,
     None, rules(0, 0, 50, 120, 300), 100, 0, 56, DOWN),
    # periodStart = 10 - 2 + 4 = 12; -50 % -> 6.
    ("scaleDown with percent policy and previous scale up and down events", uniform([2], 120),
     uniform([4], 120), 1, 1000, None, rules(0, 0, 50, 180, 0), 10, 1, 6, DOWN),
    ("scaleDown with previous events preventing further scale down", [], uniform([10, 10, 10], 120), 1, 1000,
     None, rules(0, 0, 10, 120, 300), 100, 0, 100, DOWN),
    ("scaleDown with previous events still allowing more scale down", [], uniform([10, 10, 10], 120), 1, 1000,
     None, rules(0, 0, 1000, 120, 300), 10, 5, 5, OK),
    ("check 'outdated' flag for events for one behavior for up", uniform([8, 12, 9, 11], 120), [], 1, 1000,
     rules(1000, 60, 0, 0, 0), None, 100, 200, 200, OK),
    ("events not marked 'outdated' for two different policies for up", uniform([8, 12, 9, 11], 120), [], 1,
     1000, rules(1000, 120, 100, 60, 0), None, 100, 200, 200, OK),
    ("events marked 'outdated' for two different policies for up", uniform([8, 12, 9, 11], 120), [], 1, 1000,
     rules(1000, 30, 100, 60, 0), None, 100, 200, 200, OK),
    ("check 'outdated' flag for events for one behavior for down", [], uniform([8, 12, 9, 11], 120), 1, 1000,
     None, rules(1000, 60, 0, 0, 300), 100, 5, 5, OK),
    ("events not marked 'outdated' for two different policies for down", [], uniform([8, 12, 9, 11], 120), 1,
     1000, None, rules(1000, 120, 100, 60, 300), 100, 5, 5, OK),
    ("events marked 'outdated' for two different policies for down", [], uniform([8, 12, 9, 11], 120), 1,
     1000, None, rules(1000, 30, 100, 60, 300), 100, 5, 5, OK),
]


@pytest.mark.parametrize(
    "up_events,down_events,lo,hi,up_rules,down_rules,current,desired,expected,reason",
    [case[1:] for case in SCALING_WITH_RULES],
    ids=[case[0] for case in SCALING_WITH_RULES],
)
def test_rate_limit_mirrors_scaling_with_rules(
    up_events, down_events, lo, hi, up_rules, down_rules, current, desired, expected, reason
):
    """TestScalingWithRules: convertDesiredReplicasWithBehaviorRate's value and ScalingLimited reason."""
    up, down = up_rules or default_scale_up(), down_rules or default_scale_down()
    behavior = Behavior(scale_up=up, scale_down=down)
    value, mask = rate_limit(
        one(desired), one(current), history(up_events), history(down_events), NOW, behavior, lo, hi
    )
    assert value.tolist() == [expected]
    assert mask.tolist() == [reason]


def test_rate_limit_is_one_call_for_many_targets():
    """Every target gets what it would get alone: one vectorized call, no per-target loop."""
    behavior = Behavior(scale_up=rules(5, 120, 0, 0, 0), scale_down=rules(0, 0, 50, 120, 300))
    ups = [uniform([1, 5, 9], 120), [], [(30.0, 2.0)], []]
    downs = [[], uniform([2, 4, 6], 120), [], [(200.0, 7.0)]]
    current = np.array([100.0, 100.0, 10.0, 10.0])
    desired = np.array([500.0, 0.0, 40.0, 3.0])
    value, mask = rate_limit(desired, current, history(*ups), history(*downs), NOW, behavior, 1, 1000)
    for i in range(4):
        v, m = rate_limit(
            desired[i : i + 1], current[i : i + 1], history(ups[i]), history(downs[i]), NOW, behavior, 1, 1000
        )
        assert (value[i], mask[i]) == (v[0], m[0])
    # 100 + 0: held by recent +15; 100 -> (100 + 12) * 50 % = 56; 10 - 2 + 5 = 13; the -7 is 200 s old: 5.
    assert value.tolist() == [100, 56, 13, 5]


def test_rate_limit_passes_missing_decisions_through():
    value, mask = rate_limit(one(np.nan), one(5), history([]), history([]), NOW, Behavior(), 1, 10)
    assert np.isnan(value[0]) and mask[0] == 0


def test_rate_limit_leaves_an_unchanged_count_unclamped():
    """HPA clamps only on the way up or down; prechecks keep current inside [min, max]."""
    value, mask = rate_limit(one(5), one(5), history([]), history([]), NOW, Behavior(), 6, 10)
    assert (value[0], mask[0]) == (5, 0)


def test_disabled_direction_holds_at_current():
    """selectPolicy: Disabled -> the limit is current: no scaling that way, reason ScaleUpLimit."""
    behavior = Behavior(scale_up=Direction(stabilization=0, policies=[], select="disabled"))
    value, mask = rate_limit(one(9), one(4), history([]), history([]), NOW, behavior, 1, 10)
    assert (value[0], mask[0]) == (4, UP)
    value, mask = rate_limit(one(2), one(4), history([]), history([]), NOW, behavior, 1, 10)
    assert (value[0], mask[0]) == (2, OK)


# --- TestCalculateScaleUpLimitWithScalingRules / TestCalculateScaleDownLimitWithBehaviors -------------


TWO_POLICIES = [RatePolicy(type="pods", value=2, period=60), RatePolicy(type="percent", value=50, period=60)]


def test_scale_up_limit_select_min():
    """TestCalculateScaleUpLimitWithScalingRules: current 1, Min of {+2 pods, +50 %} -> min(3, ceil(1.5))."""
    direction = Direction(stabilization=300, select="min", policies=TWO_POLICIES)
    assert scale_up_limit(one(1), history([]), history([]), NOW, direction).tolist() == [2]


def test_scale_down_limit_select_min():
    """TestCalculateScaleDownLimitWithBehaviors: current 5, Min of {-2 pods, -50 %} -> max(3, int(2.5))."""
    direction = Direction(stabilization=300, select="min", policies=TWO_POLICIES)
    assert scale_down_limit(one(5), history([]), history([]), NOW, direction).tolist() == [3]


@pytest.mark.parametrize(
    "start,percent,expected",
    [(5, 100, 10), (3, 50, 5), (100, 10, 111), (1, 1, 2)],
    ids=["5 +100% -> 10", "3 +50% -> ceil(4.5)=5", "100 +10% -> ceil(110.00000000000001)=111", "1 +1% -> 2"],
)
def test_percent_up_rounds_up_like_hpa(start, percent, expected):
    """ceil(periodStart * (1 + pct/100)) in float64, as calculateScaleUpLimitWithScalingRules computes it:
    100 * 1.1 is 110.00000000000001 there too, so HPA allows 111, not 110."""
    direction = Direction(stabilization=0, select="max", policies=[RatePolicy(type="percent", value=percent,
                                                                              period=15)])
    assert scale_up_limit(one(start), history([]), history([]), NOW, direction).tolist() == [expected]


@pytest.mark.parametrize(
    "start,percent,expected",
    [(5, 50, 2), (10, 15, 8), (3, 100, 0), (3, 150, -1)],
    ids=["5 -50% -> int(2.5)=2", "10 -15% -> int(8.5)=8", "3 -100% -> 0", "3 -150% -> int(-1.5)=-1"],
)
def test_percent_down_truncates_toward_zero(start, percent, expected):
    direction = Direction(stabilization=0, select="max", policies=[RatePolicy(type="percent", value=percent,
                                                                              period=15)])
    assert scale_down_limit(one(start), history([]), history([]), NOW, direction).tolist() == [expected]


def test_period_start_counts_only_events_inside_the_period():
    """getReplicasChangePerPeriod: an event exactly `period` seconds old is out (strictly after cutoff)."""
    direction = Direction(stabilization=0, policies=[RatePolicy(type="pods", value=1, period=60)])
    # +3 exactly 60 s ago (out), +2 59 s ago (in): periodStart = 10 - 2 = 8 -> 9.
    ups = history([(60.0, 3.0), (59.0, 2.0)])
    assert scale_up_limit(one(10), ups, history([]), NOW, direction).tolist() == [9]


# --- TestNormalizeDesiredReplicasWithBehavior (stabilizeRecommendationWithBehaviors) -----------------

# (id, recommendations (seconds ago, value), current, proposal, up window, down window, expected)
STABILIZE = [
    ("empty recommendations for scaling down", [], 100, 5, 0, 0, 5),
    ("simple scale down stabilization", [(120, 4), (60, 5)], 100, 3, 0, 180, 5),
    ("simple scale up stabilization", [(120, 4), (60, 5)], 1, 7, 300, 0, 4),
    ("no scale down stabilization", [(120, 1), (60, 2)], 100, 3, 300, 0, 3),
    ("no scale up stabilization", [(120, 4), (60, 5)], 1, 3, 0, 300, 3),
    ("no scale down stabilization, reuse recommendation element", [(600, 10), (540, 9)], 100, 3, 0, 0, 3),
    ("no scale up stabilization, reuse recommendation element", [(600, 10), (540, 9)], 1, 100, 0, 0, 100),
    ("scale down stabilization, reuse one of obsolete recommendation element",
     [(600, 10), (60, 4), (120, 5), (540, 9)], 100, 3, 0, 180, 5),
    ("scale up stabilization, reuse one of obsolete recommendation element",
     [(6000, 10), (60, 6), (120, 5), (180, 9)], 1, 100, 300, 0, 5),
    ("scale up and down stabilization, do not scale up when prenormalized rec goes down",
     [(6000, 2), (180, 3)], 2, 1, 300, 300, 2),
    ("scale up and down stabilization, do not scale down when prenormalized rec goes up",
     [(6000, 2), (180, 1)], 2, 3, 300, 300, 2),
]


@pytest.mark.parametrize(
    "recs,current,proposal,up_window,down_window,expected",
    [case[1:] for case in STABILIZE],
    ids=[case[0] for case in STABILIZE],
)
def test_stabilize_mirrors_normalize_with_behavior(recs, current, proposal, up_window, down_window, expected):
    """TestNormalizeDesiredReplicasWithBehavior: the stabilized count (the storage layout is History's)."""
    got = stabilize(one(current), one(proposal), history(recs), NOW, up_window, down_window)
    assert got.tolist() == [expected]


def test_stabilize_window_edge_is_exclusive():
    """A recommendation exactly `window` seconds old no longer counts; one second younger still does."""
    at_edge = stabilize(one(10), one(3), history([(300.0, 10.0)]), NOW, 0, 300)
    inside = stabilize(one(10), one(3), history([(299.0, 10.0)]), NOW, 0, 300)
    assert (at_edge[0], inside[0]) == (3, 10)


def test_stabilize_vectorized_and_missing_proposal():
    """Per target: its own recommendations; NaN (no decision) stays NaN."""
    recs = history([(60.0, 8.0)], [(60.0, 2.0)], [(60.0, 8.0)])
    got = stabilize(np.array([10.0, 1.0, 5.0]), np.array([4.0, 6.0, np.nan]), recs, NOW, 120, 120)
    # down: max(4, 8) = 8 holds 10 at 8; up: min(6, 2) = 2 lets 1 rise only to 2.
    assert got[:2].tolist() == [8, 2] and np.isnan(got[2])


# --- TestStoreScaleEvents (storeScaleEvent + getReplicasChangePerPeriod) -----------------------------

STORE = [
    ("empty entries", [], 0),
    ("one outdated entry to be replaced", [(61.0, 7.0)], 0),
    ("one actual entry to be not touched", [(58.0, 7.0)], 7),
    ("two entries, one of them to be replaced", [(61.0, 7.0), (59.0, 6.0)], 6),
    ("replace one entry, use policies with different periods", [(29.0, 8.0), (59.0, 6.0), (61.0, 7.0),
                                                                 (61.0, 9.0)], 14),
    ("two entries, both actual", [(58.0, 7.0), (59.0, 6.0)], 13),
]


def record_events(ups: History, downs: History, now: float, current: np.ndarray, desired: np.ndarray):
    """storeScaleEvent for the narrated runs below, which drive the rate-limit step on its own: |change|
    goes into its direction's history (the decision path records its own; the tests above pin that)."""
    change = np.nan_to_num(desired - current)
    return ups.push(now, np.maximum(change, 0.0)), downs.push(now, np.maximum(-change, 0.0))


STORE_POLICY = make_policy(behavior={
    "scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 60}]},
    "scale_down": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 60}]}})


def decide_after(up: list, down: list, current: list[float], cpu: list[float]):
    """One decide() at NOW from `current` replicas, with earlier scale events (seconds ago, change)
    already in the state's histories (both share their slot times, as the state keeps them), and the
    decision written (committed): (decision, state after the commit)."""
    params = params_of(STORE_POLICY)
    n = len(current)
    now_count = np.array(current, dtype=float)
    both = history(*up, *down, slots=params.history_slots)
    state = initial_state(params, now_count, NOW - 3600)
    heads = state.hist_heads.copy()
    heads[EVENTS] = both.head
    state = state._replace(ev_t=both.t, up_v=np.ascontiguousarray(both.v[:, :n]),
                           down_v=np.ascontiguousarray(both.v[:, n:]), hist_heads=heads)
    d = decide(params, state, np.array([cpu], dtype=float), current=now_count, now=NOW)
    return d, d.state.with_applied(NOW, now_count, d.desired)


def events(state: State) -> tuple[History, History]:
    """The state's scale-up and scale-down events."""
    head = int(state.hist_heads[EVENTS])
    return History(t=state.ev_t, v=state.up_v, head=head), History(t=state.ev_t, v=state.down_v, head=head)


@pytest.mark.parametrize("previous,in_period", [c[1:] for c in STORE], ids=[c[0] for c in STORE])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_decision_stores_scale_events_like_hpa(previous, in_period, direction):
    """TestStoreScaleEvents through the whole decision and its commit: the last 60 s sum the earlier
    events, and this tick's change once written (10 -> 15 at cpu 105 % of a 70 % target, or 10 -> 5 at
    35 %) adds 5 to its own direction only, where the next tick's rate limit will count it."""
    up, down = (previous, []) if direction == "up" else ([], previous)
    d, state = decide_after([up], [down], [10.0], [105.0 if direction == "up" else 35.0])
    assert d.desired.tolist() == [15 if direction == "up" else 5]
    mine, other = events(state)[:: 1 if direction == "up" else -1]
    assert mine.sum_within(NOW, 60).tolist() == [in_period + 5]
    assert other.sum_within(NOW, 60).tolist() == [0]


def test_decision_stores_events_per_target_and_none_when_held():
    """5 -> 8 records 3 up; 6 -> 2 records 4 down; a count in the band, and one held for missing data,
    record nothing."""
    d, state = decide_after([[]] * 4, [[]] * 4, [5, 6, 3, 3.0], [112.0, 23.0, 70.0, math.nan])
    assert d.desired.tolist() == [8, 2, 3, 3]
    ups, downs = events(state)
    assert ups.sum_within(NOW, 15).tolist() == [3, 0, 0, 0]
    assert downs.sum_within(NOW, 15).tolist() == [0, 4, 0, 0]
    assert np.all(np.nan_to_num(d.state.up_v) == 0)  # nothing is recorded before the commit


# --- A narrated run of the default behavior ----------------------------------------------------------


def test_default_behavior_scale_up_over_ticks():
    """Default scaleUp (+4 pods or +100 % per 15 s) with a 5 s tick, load asking for 20 from 2 replicas."""
    behavior = Behavior()
    ups = downs = History.empty(1, SLOTS)
    current, t0 = one(2), NOW
    seen = []
    for step in range(5):
        now = t0 + 5 * step
        value, mask = rate_limit(one(20), current, ups, downs, now, behavior, 1, 100)
        ups, downs = record_events(ups, downs, now, current, value)
        seen.append((int(value[0]), int(mask[0])))
        current = value
    assert seen == [
        (6, UP),  # t+0: max(2 + 4, 2 * 2) = 6
        (6, UP),  # t+5: the +4 is inside the period, so it started at 2: still 6
        (6, UP),  # t+10: same
        (12, UP),  # t+15: the +4 is exactly 15 s old and drops out; from 6: max(10, 12) = 12
        (12, UP),  # t+20: +6 at t+15 counts; the period started at 6 again
    ]
