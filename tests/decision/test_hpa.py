"""The HPA algorithm's own parts against Kubernetes' tests (replica_calculator_test.go, horizontal_test.go)."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.decision.reasons import Reason
from scaler.decision.steps import History, legacy_normalize, precheck, proposals
from scaler.policy.model import MetricKind, Tolerance
from tests.conftest import ROOT

MANIFEST = ROOT / "tests" / "data" / "hpa-manifest.yaml"
NOW = 10_000.0

U, L, E, G = MetricKind.utilization, MetricKind.latency, MetricKind.error_rate, MetricKind.gauge

# --- proposals: replica_calculator_test.go ------------------------------------------------------------
# Each case: (Kubernetes test, kind, value, target, current, ready, expected). `value` is what scaler
# receives: utilization averaged over the ready pods (levels / requests), a Value metric's value, or a
# gauge's total. "Hot CPU" pods count as unready, like pods whose readiness is False.
REPLICA_CALC = [
    ("TestReplicaCalcScaleUp", U, 50, 30, 3, 3, 5),  # 1500m of 3000m = 50 %; ceil(3 * 50/30) = 5
    ("TestReplicaCalcScaleUpUnreadyLessScale", U, 60, 30, 3, 2, 4),  # unready at 0 %: 40/30 * 3 -> 4, not 6
    ("TestReplicaCalcScaleUpHotCpuLessScale", U, 60, 30, 3, 2, 4),
    ("TestReplicaCalcScaleUpUnreadyNoScale", U, 40, 30, 3, 1, 3),  # 13.3/30 < 1 flips direction: hold
    ("TestReplicaCalcScaleHotCpuNoScale", U, 40, 30, 3, 1, 3),
    ("TestReplicaCalcScaleUpIgnoresFailedPods", U, 60, 30, 2, 2, 4),  # failed pods are not replicas at all
    ("TestReplicaCalcScaleUpIgnoresDeletionPods", U, 60, 30, 2, 2, 4),
    ("TestReplicaCalcScaleDown", U, 28, 50, 5, 5, 3),  # ceil(5 * 0.56) = 3
    ("TestReplicaCalcScaleDownIncludeUnreadyPods", U, 30, 50, 5, 3, 2),  # scale-down sizes from ready: 3*0.6
    ("TestReplicaCalcScaleDownExcludeUnscheduledPods", U, 10, 50, 5, 1, 1),
    ("TestReplicaCalcScaleDownIgnoreHotCpuPods", U, 30, 50, 5, 3, 2),
    ("TestReplicaCalcScaleDownIgnoresFailedPods", U, 28, 50, 5, 5, 3),
    ("TestReplicaCalcSuperfluousMetrics", U, 587, 100, 4, 4, 24),  # ceil(4 * 5.87) = 24
    ("TestReplicaCalcTolerance", U, 102, 100, 3, 3, 3),  # 1.02 inside [0.9, 1.1]
    # Pods (custom) metrics: only Pending pods are unready, so ready == current here.
    ("TestReplicaCalcScaleUpCM", U, 20000, 15000, 3, 3, 4),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", U, 30000, 15000, 3, 3, 6),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", U, 95000 / 3, 15000, 3, 3, 7),
    ("TestReplicaCalcScaleDownCM", U, 12000, 20000, 5, 5, 3),
    ("TestReplicaCalcToleranceCM", U, 20666, 20000, 3, 3, 3),
    # Object / External Value metrics: ratio * ready pods, no unready adjustment.
    ("TestReplicaCalcScaleUpCMObject", L, 20000, 15000, 3, 3, 4),
    ("TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods", L, 50000, 10000, 3, 1, 5),  # 15 counting all 3
    ("TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods", E, 8600, 4400, 3, 1, 2),  # 6 counting all 3
    ("TestReplicaCalcScaleUpCMExternal", E, 8600, 4400, 1, 1, 2),
    ("TestReplicaCalcScaleDownCMObject", L, 12000, 20000, 5, 5, 3),
    ("TestReplicaCalcScaleDownCMExternal", E, 8600, 14334, 5, 5, 3),
    ("TestReplicaCalcToleranceCMObject", L, 20666, 20000, 3, 3, 3),
    ("TestReplicaCalcToleranceCMExternal", E, 8600, 8888, 3, 3, 3),
    # AverageValue Object / External metrics: total / per-replica target.
    ("TestReplicaCalcScaleUpPerPodCMExternal", G, 8600, 2150, 3, 3, 4),
    ("TestReplicaCalcScaleUpCMPerPodObject", G, 20000, 5000, 3, 3, 4),
    ("TestReplicaCalcScaleDownPerPodCMExternal", G, 8600, 2867, 5, 5, 3),
    ("TestReplicaCalcScaleDownPerPodCMObject", G, 6000, 2000, 5, 5, 3),
    ("TestReplicaCalcTolerancePerPodCMObject", G, 20166, 5000, 4, 4, 4),  # 20166 / 20000 = 1.008
    ("TestReplicaCalcTolerancePerPodCMExternal", G, 8600, 2900, 3, 3, 3),
]


@pytest.mark.parametrize(
    "kind,value,target,current,ready,expected",
    [c[1:] for c in REPLICA_CALC],
    ids=[c[0] for c in REPLICA_CALC],
)
def test_proposals_mirror_replica_calculator(kind, value, target, current, ready, expected):
    got = proposals(np.array([[value]]), np.array([target]), [kind], np.array([current]), np.array([ready]),
                    Tolerance())
    assert got.tolist() == [[expected]]


# (id, value, target, current, ready, expected with the whole percent, expected without)
WHOLE_PERCENT = [
    ("55.9 % counts as 55: ratio 1.1, inside the tolerance", 55.9, 50, 3, 3, 3, 4),
    ("53.7 % against 50: 1.06 either way", 53.7, 50, 3, 3, 3, 3),
    ("99.99 % counts as 99: ceil(3 x 99/50) = 6, not 7", 99.99, 50, 3, 3, 6, 6),
    ("66.9 % against 30: ceil(3 x 66/30) = 7, not ceil(3 x 66.9/30) = 7", 66.9, 30, 3, 3, 7, 7),
    ("unready: 50.9 % on 2 of 3 is 33.93 % over all, counted 33: 1.1, hold", 50.9, 30, 3, 2, 3, 4),
    ("below target: 29.9 % counts as 29 against 40", 29.9, 40, 4, 4, 3, 3),
]


@pytest.mark.parametrize("value,target,current,ready,whole,exact", [c[1:] for c in WHOLE_PERCENT],
                         ids=[c[0] for c in WHOLE_PERCENT])
def test_resource_utilization_is_a_whole_percent_as_hpa_computes_it(value, target, current, ready, whole, exact):
    """GetResourceUtilizationRatio: currentUtilization = int32(metricsTotal * 100 / requestsTotal)."""
    args = (np.array([[value]]), np.array([target]), [U], np.array([current]), np.array([ready]), Tolerance())
    assert proposals(*args, whole=[True]).tolist() == [[whole]]
    assert proposals(*args).tolist() == [[exact]]


def test_proposals_are_one_call_for_all_metrics_and_targets():
    """The whole table at once, one metric row per kind, each case a target: same answers as one by one."""
    n = len(REPLICA_CALC)
    kinds = [U, L, E, G]
    values = np.full((4, n), np.nan)
    targets = np.ones(4)
    for j, (_, kind, value, target, *_rest) in enumerate(REPLICA_CALC):
        values[kinds.index(kind), j] = value / target  # the same ratio against a unit target
    current = np.array([c[4] for c in REPLICA_CALC], dtype=float)
    ready = np.array([c[5] for c in REPLICA_CALC], dtype=float)
    got = proposals(values, targets, kinds, current, ready, Tolerance())
    assert got.shape == (4, n)
    expected = [c[6] for c in REPLICA_CALC]
    for j, (_, kind, *_rest) in enumerate(REPLICA_CALC):
        row = kinds.index(kind)
        assert got[row, j] == expected[j], REPLICA_CALC[j][0]
        assert np.isnan(np.delete(got[:, j], row)).all()


def test_one_metric_invalid_leaves_the_others():
    """TestScaleUpOneMetricInvalid: cpu 40 % of a 30 % target on 3 pods asks for 4; the broken metric
    (NaN, e.g. the CheddarCheese type or a failed External read) proposes nothing."""
    got = proposals(np.array([[40.0], [np.nan]]), np.array([30.0, 100.0]), [U, E], np.array([3.0]),
                    np.array([3.0]), Tolerance())
    assert got[0].tolist() == [4] and np.isnan(got[1, 0])


# (id, kind, value, target, tolerance up/down, expected from 3 replicas)
TOLERANCE = [
    ("upper edge is inside: 110/100 = 1 + 0.1", U, 110, 100, (0.1, 0.1), 3),
    ("just above the upper edge", U, 111, 100, (0.1, 0.1), 4),
    ("lower edge is inside: 90/100 = 1 - 0.1", U, 90, 100, (0.1, 0.1), 3),
    ("just below the lower edge", U, 89, 100, (0.1, 0.1), 3),  # ceil(3 * 0.89) = 3 anyway
    ("well below the lower edge", U, 60, 100, (0.1, 0.1), 2),
    ("zero scale-up tolerance acts on 1 %", U, 101, 100, (0.0, 0.1), 4),
    ("wide scale-down tolerance holds at 60 %", U, 60, 100, (0.1, 0.5), 3),
    ("wide scale-down tolerance, value metric", E, 0.006, 0.01, (0.1, 0.5), 3),
    ("gauge inside a 5 % up tolerance", G, 31, 10, (0.05, 0.1), 3),  # 31 / 30 = 1.033
    ("gauge outside a 2 % up tolerance", G, 31, 10, (0.02, 0.1), 4),
]


@pytest.mark.parametrize(
    "kind,value,target,tol,expected", [c[1:] for c in TOLERANCE], ids=[c[0] for c in TOLERANCE]
)
def test_tolerance_per_direction(kind, value, target, tol, expected):
    """Tolerances.isWithin (v1.33, KEP-4951): keep current when 1 - down <= ratio <= 1 + up, both ends
    included; scaleUp and scaleDown tolerances are independent."""
    got = proposals(np.array([[value]]), np.array([target]), [kind], np.array([3.0]), np.array([3.0]),
                    Tolerance(up=tol[0], down=tol[1]))
    assert got.tolist() == [[expected]]


def test_gauge_counts_every_replica_not_only_ready_ones():
    """GetExternalPerPodMetricReplicas divides by statusReplicas (every pod), not the ready count: 110 total,
    20 per replica, 5 replicas of which 4 ready -> ratio 110/100 = 1.1, inside the tolerance: hold 5."""
    got = proposals(np.array([[110.0]]), np.array([20.0]), [G], np.array([5.0]), np.array([4.0]), Tolerance())
    assert got.tolist() == [[5]]


def test_scale_from_zero():
    """HPAScaleToZero: with 0 replicas a Value metric asks for ceil(ratio) (getUsageRatioReplicaCount); a
    gauge for ceil(total / target); a utilization metric has no pods to read and proposes nothing."""
    got = proposals(np.array([[2.5], [95.0], [50.0]]), np.array([1.0, 10.0, 50.0]), [L, G, U],
                    np.array([0.0]), np.array([0.0]), Tolerance())
    assert got[:2, 0].tolist() == [3, 10] and np.isnan(got[2, 0])


# --- precheck: reconcileAutoscaler ---------------------------------------------------------------------

PRECHECK = [
    ("scaling disabled: current 0, min 1", 0, 1, 10, 0.0, Reason.DISABLED),
    ("TestScaleDownRCImmediately: 6 above max 5", 6, 2, 5, 5.0, Reason.OUT_OF_RANGE),
    ("below min: 1 with min 2", 1, 2, 6, 2.0, Reason.OUT_OF_RANGE),
    ("in range: metrics decide", 3, 2, 6, np.nan, 0),
    ("min 0 and current 0: metrics decide (scale from zero)", 0, 0, 6, np.nan, 0),
]


@pytest.mark.parametrize(
    "current,lo,hi,forced,reason", [c[1:] for c in PRECHECK], ids=[c[0] for c in PRECHECK]
)
def test_precheck(current, lo, hi, forced, reason):
    value, mask = precheck(np.array([current]), lo, hi)
    assert np.array_equal(value, [forced], equal_nan=True)
    assert mask.tolist() == [int(reason)]


def test_precheck_takes_per_target_bounds():
    value, mask = precheck(np.array([0.0, 12.0, 4.0]), np.array([1, 1, 5]), np.array([10, 10, 10]))
    assert value.tolist() == [0, 10, 5]
    assert mask.tolist() == [Reason.DISABLED, Reason.OUT_OF_RANGE, Reason.OUT_OF_RANGE]


# --- legacy_normalize: TestNormalizeDesiredReplicas + TestConvertDesiredReplicasWithRules ----------------


def recs(*pairs: tuple[float, float]) -> History:
    h = History.empty(1, 24)
    for age, value in sorted(pairs, reverse=True):
        h = h.push(NOW - age, np.array([value]))
    return h


STABILIZE_LEGACY = [
    ("empty log", [], 5, 5, 0),
    ("stabilize", [(120, 4), (60, 5)], 3, 5, Reason.SCALE_DOWN_STABILIZED),
    ("no stabilize", [(120, 1), (60, 2)], 3, 3, 0),
    ("no stabilize - old recommendations", [(600, 10), (540, 9)], 3, 3, 0),
    ("stabilize - old recommendations", [(600, 10), (60, 4), (120, 5), (540, 9)], 3, 5,
     Reason.SCALE_DOWN_STABILIZED),
]


@pytest.mark.parametrize(
    "history,proposal,expected,reason",
    [c[1:] for c in STABILIZE_LEGACY],
    ids=[c[0] for c in STABILIZE_LEGACY],
)
def test_legacy_stabilization(history, proposal, expected, reason):
    """TestNormalizeDesiredReplicas (stabilizeRecommendation, 5 min window); current 4 so no cap binds."""
    value, mask = legacy_normalize(np.array([proposal]), np.array([4.0]), recs(*history), NOW, 1, 100)
    assert (value.tolist(), mask.tolist()) == ([expected], [int(reason)])


CONVERT = [
    ("prenormalized desired replicas within range", 5, 7, 3, 8, 7, 0),
    ("prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2, Reason.TOO_FEW_REPLICAS),
    ("prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0, 0),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10,
     Reason.TOO_MANY_REPLICAS),
    # Kubernetes' test sets scaleUpLimitFactor = 8 (expects 24); the shipped factor is 2: max(6, 4) = 6.
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas", 3, 1000, 1, 2000, 6,
     Reason.SCALE_UP_LIMIT),
    ("scaleUpLimitMinimum: from 1 replica up to 4", 1, 10, 1, 100, 4, Reason.SCALE_UP_LIMIT),
    ("cap equal to max counts as TooManyReplicas", 5, 30, 1, 10, 10, Reason.TOO_MANY_REPLICAS),
]


@pytest.mark.parametrize("current,desired,lo,hi,expected,reason", [c[1:] for c in CONVERT],
                         ids=[c[0] for c in CONVERT])
def test_legacy_clamp_mirrors_convert_desired_replicas_with_rules(current, desired, lo, hi, expected, reason):
    proposal, replicas = np.array([desired], float), np.array([current], float)
    value, mask = legacy_normalize(proposal, replicas, recs(), NOW, lo, hi)
    assert (value.tolist(), mask.tolist()) == ([expected], [int(reason)])


def test_legacy_window_edge_is_inclusive():
    """stabilizeRecommendation drops only records *before* now - 300 s; one exactly 300 s old still holds
    the count up (unlike the behavior path)."""
    value, _ = legacy_normalize(np.array([2.0]), np.array([4.0]), recs((300.0, 7.0)), NOW, 1, 10)
    older, _ = legacy_normalize(np.array([2.0]), np.array([4.0]), recs((300.5, 7.0)), NOW, 1, 10)
    assert (value[0], older[0]) == (7, 2)


def test_legacy_reasons_combine_and_missing_passes():
    """A recent 20 holds the count up, then the 2x cap binds: 3 -> 6 with both reasons; NaN stays NaN."""
    value, mask = legacy_normalize(np.array([3.0, np.nan]), np.array([3.0, 3.0]),
                                   History.empty(2, 24).push(NOW - 60, np.array([20.0, 20.0])), NOW, 1, 100)
    assert value[0] == 6 and np.isnan(value[1])
    assert mask.tolist() == [Reason.SCALE_DOWN_STABILIZED | Reason.SCALE_UP_LIMIT, 0]
