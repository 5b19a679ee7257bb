"""The simulated world: a steady load settles where the arithmetic says, with no feedback from lag."""

import numpy as np
import pytest

from scaler.policy.load import load_policy
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.replay import Demand, run
from scaler.simulate.world import World
from tests.conftest import ROOT


def steady(load: float, ticks: int = 240, start: float = 3.0) -> Demand:
    return Demand(times=1.7e9 + np.arange(ticks) * 15.0, load=np.full((1, ticks), load), gauges={},
                  initial=np.array([start]), load_metric="cpu", sample_step=15.0, absent=("memory",))


@pytest.mark.parametrize(("name", "settles"), [("web", 6), ("hpa-baseline", 7)])
def test_steady_load_settles_without_overshoot(name, settles):
    """4.5 replicas of work from 3 replicas: saturated at first, then HPA's ceil(4.5 / 0.7) = 7 serve it at
    64 %; web stops at 6, where 75 % sits inside its 65-80 % band. The controller sees metrics 30 s late
    together with the ready count they were measured at, so replicas that become ready are not counted
    against old, saturated readings (which would climb to max)."""
    web = load_policy(ROOT / "policies" / "web.yaml")
    policy = web if name == "web" else hpa_baseline(web)
    r = run(policy, steady(4.5), World(), targets=("t",))
    assert r.timeline.desired[-1, 0] == settles
    assert r.peak_replicas[0] <= settles + 1


@pytest.mark.parametrize(
    "rho, latency, errors",
    [(0.5, 0.02 * np.log(20) / 0.5, 0.0), (0.8, 0.02 * np.log(20) / 0.2, 0.0), (1.25, 10.0, 0.2),
     (0.0, 0.02 * np.log(20), 0.0)],
    ids=["half-busy", "at-slo-edge", "overloaded", "idle"],
)
def test_queueing_model(rho, latency, errors):
    w = World()
    assert w.latency(np.array([rho]))[0] == pytest.approx(latency)
    assert w.error_rate(np.array([rho]))[0] == pytest.approx(errors)


def test_a_gap_has_no_latency_or_errors_and_a_slow_service_is_capped():
    gap = np.array([np.nan])
    assert np.isnan(World().latency(gap)).all() and np.isnan(World().error_rate(gap)).all()
    # 5 s service: p95 at rho 0.9 would be 150 s; a client gives up at the 10 s cap first
    assert World(service_time=5.0).latency(np.array([[0.9, 0.0]])).tolist() == [[10.0, 10.0]]


@pytest.mark.parametrize("count, want", [(False, {"recorded_replicas": 14.0}), (True, {"capacity": 50 / 7})],
                         ids=["cpu-percent", "count"])
def test_busy_scale_puts_p99_at_seven_replicas_of_work(count, want):
    from scaler.simulate.world import busy_scale

    values = np.r_[np.full(500, 10.0), np.full(500, 50.0), np.nan]  # p99 = 50 (NaN is a gap, ignored)
    got = busy_scale(values, count=count)
    assert got.keys() == want.keys()
    assert list(got.values())[0] == pytest.approx(list(want.values())[0])
