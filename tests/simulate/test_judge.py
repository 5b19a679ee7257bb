"""Fair judging: one SLO for the run, the HPA users write (no behavior), HPA's cost/violation curve and the
reading at equal cost, and how coarse samples become ticks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler.policy.load import load_policy
from scaler.policy.model import Slo
from scaler.recordings.model import Recording, resample
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.judge import Curve, Point, describe_slo, hpa_curve, judge, parse_slo
from scaler.simulate.replay import simulate
from scaler.simulate.timing import interpolated
from scaler.simulate.world import World
from tests.conftest import ROOT

WEB = ROOT / "policies" / "web.yaml"
T0 = 1_700_000_000.0


def recording(values, step=300.0, targets=("a",)) -> Recording:
    v = np.atleast_2d(np.asarray(values, dtype=float))
    times = T0 + step * np.arange(v.shape[1])
    return Recording(source="test", times=times, targets=targets, metrics={"cpu": v}, replicas=None, step=step)


def test_parse_slo_reads_each_part_and_names_a_bad_one():
    assert parse_slo("latency=300ms, error_rate=0.01,utilization=90") == Slo(latency=0.3, error_rate=0.01,
                                                                             utilization=90)
    assert describe_slo(parse_slo("latency=2s")) == "p95 latency <= 2 s"
    for bad, said in (("p99=1s", "'p99=1s'"), ("latency=soon", "'latency=soon'"), ("", "at least one")):
        with pytest.raises(ValueError, match=said):
            parse_slo(bad)


def test_the_hpa_users_write_has_no_behavior_and_reads_whole_percents():
    web = load_policy(WEB)
    legacy, v2 = hpa_baseline(web), hpa_baseline(web, v2_behavior=True)
    assert legacy.legacy and legacy.behavior is None and "no behavior" in legacy.description
    assert not v2.legacy and v2.behavior is not None
    assert [m.name for m in legacy.metrics] == ["cpu", "memory"]  # the resource metrics HPA scales on
    assert all(legacy.whole_percent(m) for m in legacy.metrics)
    assert [m.target for m in hpa_baseline(web, cpu_target=55).metrics] == [55, 80]  # memory keeps its own


def test_every_policy_is_judged_by_the_runs_slo_not_its_own():
    """An HPA manifest has no slo block: judged by its own it would violate nothing; by the run's it does."""
    web = load_policy(WEB)
    rec = recording(np.r_[np.full(20, 40.0), np.full(20, 95.0), np.full(20, 40.0)])
    hpa = hpa_baseline(web).model_copy(update={"slo": Slo()})
    own = simulate(hpa, rec, World(), record=False)
    run = simulate(hpa, rec, World(slo=web.slo), record=False)
    assert own.slo_violation_seconds.sum() == 0 < run.slo_violation_seconds.sum()
    assert run.summary()["model"]["slo"] == web.slo.model_dump()


def test_equal_cost_reads_hpas_curve_between_its_points():
    curve = Curve((Point("a", 100, 10.0), Point("b", 200, 2.0), Point("c", 300, 1.0)), (80, 70, 60))
    assert curve.violation_at(150) == (6.0, True)
    assert curve.violation_at(50) == (10.0, False)  # cheaper than any HPA: its cheapest point, and said so
    v = judge(Point("p", 250, 0.75), curve)
    assert v.hpa_at_equal_cost == 1.5 and v.ratio == 0.5 and v.inside
    assert judge(Point("p", 250, 0.0), Curve((Point("a", 100, 0.0), Point("b", 300, 0.0)), (1, 2))).ratio == 1.0
    assert math.isinf(judge(Point("p", 250, 1.0), Curve((Point("a", 100, 0.0), Point("b", 300, 0.0)), (1, 2))).ratio)


def test_hpas_curve_costs_more_the_lower_its_target():
    web = load_policy(WEB)
    rec = recording(40 + 30 * np.sin(np.arange(200) / 10.0) ** 2)
    curve = hpa_curve(web, rec, World(slo=web.slo), targets=(50, 70, 90))
    costs = [p.replica_hours for p in curve.points]
    assert costs[0] >= costs[1] >= costs[2] and costs[0] > costs[2]


def test_interpolation_draws_lines_between_samples_and_keeps_gaps():
    rec = recording([[0.0, 60.0, 120.0, np.nan, 30.0, 30.0]], step=60.0)
    grid, held, _ = resample(rec, interval=15.0)
    line = interpolated(rec, grid, held)["cpu"][0]
    np.testing.assert_allclose(line[:8], [0, 15, 30, 45, 60, 75, 90, 105])
    # 120 is followed by a missing sample: held for one step, then no data, as holding does
    np.testing.assert_array_equal(line[8:12], [120, 120, 120, 120])
    assert np.isnan(line[12:16]).all()
    np.testing.assert_array_equal(line[16:], [30] * 8)


def test_interpolate_is_an_option_of_the_run_and_is_reported():
    web = load_policy(WEB)
    rec = recording(40 + 30 * np.sin(np.arange(100) / 7.0) ** 2)
    held = simulate(web, rec, World(slo=web.slo))
    line = simulate(web, rec, World(slo=web.slo, sample_timing="interpolate"))
    assert not np.array_equal(held.timeline.demand, line.timeline.demand)
    assert "straight lines" in line.summary()["model"]["replay"] and "--sample-timing interpolate" in line.notes[0]
    assert "held until the next" in held.summary()["model"]["replay"]
