"""Vectorizing and splitting a replay must not change it: many targets at once, one at a time, in one process
or in several, and with the decision state updated in place or copied, every figure comes out the same."""

import numpy as np
import pytest

from scaler.decision.decide import decide
from scaler.decision.params import params_of
from scaler.decision.state import initial_state
from scaler.policy.load import load_policy
from scaler.policy.model import Policy
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.replay import Demand, run
from scaler.simulate.world import World
from tests.conftest import ROOT

TICKS = 480  # two hours at 15 s
TARGETS = 7


def demand(policy: Policy, *, seed: int = 1) -> Demand:
    """Bursty load with gaps, a gauge where the policy reads one, and starting counts that include 0 and
    counts outside the policy's bounds."""
    rng = np.random.default_rng(seed)
    t = np.arange(TICKS)
    load = (2.0 + 1.5 * np.sin(t / 40.0)[None, :] * rng.uniform(0.5, 2.0, (TARGETS, 1))
            + rng.gamma(1.0, 0.6, (TARGETS, TICKS)) * (rng.random((TARGETS, TICKS)) < 0.2) * 6)
    for _ in range(10):  # recording gaps
        i, start = rng.integers(TARGETS), rng.integers(TICKS)
        load[i, start:start + rng.integers(1, 12)] = np.nan
    gauges = {m.name: np.where(rng.random((TARGETS, TICKS)) < 0.02, np.nan, load * rng.uniform(80, 150))
              for m in policy.metrics if m.kind == "gauge"}
    initial = np.array([4.0, 3.0, 0.0, 12.0, 1.0, 7.0, 25.0])[:TARGETS]
    return Demand(times=1.7e9 + t * policy.interval, load=load, gauges=gauges, initial=initial,
                  load_metric="cpu", sample_step=policy.interval)


def mixed() -> Policy:
    """Every window type, fallback, cooldowns, panic and two rate-limit policies sharing a period."""
    return Policy.model_validate({
        "name": "mixed", "replicas": {"min": 2, "max": 20},
        "metrics": [
            {"name": "cpu", "target": 65, "scale_up_above": 75, "scale_down_below": 40,
             "window": {"type": "percentile", "length": 90, "q": 90}},
            {"name": "p95", "kind": "latency", "target": 0.3, "window": {"type": "mean", "length": 150}},
            {"name": "err", "kind": "error_rate", "target": 0.01, "window": {"type": "ewma", "half_life": 30}},
            {"name": "cpu_trend", "target": 65, "scale_up_above": 80, "scale_down_below": 50,
             "window": {"type": "trend", "length": 300, "lead": 90}},
        ],
        "behavior": {
            "scale_up": {"stabilization": 30, "cooldown": 30, "policies": [
                {"type": "pods", "value": 2, "period": 60}, {"type": "percent", "value": 30, "period": 60}]},
            "scale_down": {"stabilization": 90, "select": "min", "cooldown": 45, "policies": [
                {"type": "pods", "value": 1, "period": 30}, {"type": "percent", "value": 20, "period": 30}]},
        },
        "fallback": {"failure_threshold": 3, "replicas": 12},
        "panic": {"threshold": 1.5, "window": 30, "hold": 45},
    })


def legacy_hpa() -> Policy:
    return Policy.model_validate({
        "name": "legacy", "algorithm": "hpa", "replicas": {"min": 1, "max": 15},
        "metrics": [{"name": "cpu", "target": 60, "window": {"type": "last"}},
                    {"name": "p95", "kind": "latency", "target": 0.2, "window": {"type": "last"}}],
    })


POLICIES = {
    "web": lambda: load_policy(ROOT / "policies" / "web.yaml"),
    "hpa-baseline": lambda: hpa_baseline(load_policy(ROOT / "policies" / "web.yaml")),
    "worker-gauge": lambda: load_policy(ROOT / "policies" / "worker.yaml"),
    "mixed": mixed,
    "legacy-hpa": legacy_hpa,
}
TOTALS = ("replica_hours", "slo_violation_seconds", "no_data_seconds", "scale_ups", "scale_downs", "peak_replicas")
TIMELINE = ("replicas", "ready", "desired", "demand", "observed", "smoothed", "slo_ok", "reasons")


def assert_same(a, b, columns=slice(None)):
    """Totals and timeline of `b` equal those of `a` (for `a`'s targets in `columns`), to the bit."""
    for name in TOTALS:
        np.testing.assert_array_equal(getattr(a, name)[columns], getattr(b, name), err_msg=name)
    for name in TIMELINE:
        np.testing.assert_array_equal(getattr(a.timeline, name)[..., columns], getattr(b.timeline, name),
                                      err_msg=f"timeline.{name}")


@pytest.fixture(params=list(POLICIES), ids=list(POLICIES))
def case(request):
    policy = POLICIES[request.param]()
    return policy, demand(policy)


def test_all_targets_at_once_match_each_target_alone(case):
    policy, dem = case
    world = World(startup_delay=45, lag=30)
    together = run(policy, dem, world, targets=tuple(f"t{i}" for i in range(TARGETS)), workers=1)
    for i in range(TARGETS):
        alone = Demand(times=dem.times, load=dem.load[i:i + 1], gauges={k: v[i:i + 1] for k, v in dem.gauges.items()},
                       initial=dem.initial[i:i + 1], load_metric=dem.load_metric, sample_step=dem.sample_step)
        assert_same(together, run(policy, alone, world, targets=(f"t{i}",), workers=1), slice(i, i + 1))


@pytest.mark.parametrize("record", [True, False], ids=["timeline", "totals-only"])
def test_split_across_processes_matches_one_process(case, record):
    policy, dem = case
    world = World()
    targets = tuple(f"t{i}" for i in range(TARGETS))
    one = run(policy, dem, world, targets=targets, record=record, workers=1)
    split = run(policy, dem, world, targets=targets, record=record, workers=2)
    if record:
        assert_same(one, split)
    else:
        for name in TOTALS:
            np.testing.assert_array_equal(getattr(one, name), getattr(split, name), err_msg=name)


def test_in_place_state_matches_copied_state(case):
    """The simulator lets decide() overwrite its state buffers; the live loop keeps every state intact.
    Both must decide alike, tick after tick."""
    policy, dem = case
    params = params_of(policy)
    rng = np.random.default_rng(3)
    current = np.clip(dem.initial, 1, None)
    states = {reuse: initial_state(params, current, float(dem.times[0])) for reuse in (True, False)}
    for k in range(120):
        observed = rng.uniform(0.0, 2.0, (len(policy.metrics), TARGETS)) * params.target[:, None]
        observed[rng.random(observed.shape) < 0.05] = np.nan
        ready = np.maximum(current - rng.integers(0, 2, TARGETS), 0)
        now = float(dem.times[k])
        got = {reuse: decide(params, states[reuse], observed, current=current, ready=ready, now=now,
                             reuse_state=reuse) for reuse in (True, False)}
        for name in got[True].steps._fields:
            np.testing.assert_array_equal(getattr(got[True].steps, name), getattr(got[False].steps, name))
        # a write that failed now and then: the commit records only what was written
        written = np.where(rng.random(TARGETS) < 0.9, got[True].desired, np.nan)
        states = {reuse: got[reuse].state.with_applied(now, current, written, reuse=reuse) for reuse in (True, False)}
        current = np.where(np.isnan(written), current, written)


def test_the_simulator_decides_as_decide_does_tick_by_tick(case):
    """One decision path: the compiled closed loop makes, every tick, the decision `decide` (what the live
    loop calls) makes from the same view of the world: the metrics and ready count from `lag` ago."""
    policy, dem = case
    world = World(startup_delay=45, lag=30)
    lag = int(world.lag / policy.interval)
    sim = run(policy, dem, world, targets=tuple(f"t{i}" for i in range(TARGETS)), workers=1)
    tl = sim.timeline
    params = params_of(policy)
    state = initial_state(params, dem.initial, float(dem.times[0]))
    for k, now in enumerate(dem.times):
        seen_ready = tl.ready[k - lag] if k >= lag else tl.ready[k]
        d = decide(params, state, tl.observed[k], current=tl.replicas[k], ready=seen_ready, now=float(now))
        np.testing.assert_array_equal(d.desired, tl.desired[k], err_msg=f"tick {k}")
        np.testing.assert_array_equal(d.reasons, tl.reasons[k], err_msg=f"tick {k}")
        np.testing.assert_array_equal(d.smoothed, tl.smoothed[k], err_msg=f"tick {k}")
        state = d.state.with_applied(float(now), tl.replicas[k], d.desired)  # the world applies it all
    assert np.count_nonzero(np.diff(tl.desired, axis=0)) > 10  # the policy did act along the way


def test_warming_up_compiles_every_layout_a_split_run_uses():
    """After simulate.warm(), a run split across processes (its timeline written through column views)
    needs no new compiled version of the loop: none is compiled in the parent (checked here), so none in
    the forked worker either, which starts from the parent's."""
    from scaler.simulate import replay as simulate
    from scaler.simulate.closedloop import run_chunk

    simulate.warm()
    compiled = set(run_chunk.signatures)
    policy = load_policy(ROOT / "policies" / "web.yaml")
    for detail in (False, True):
        run(policy, demand(policy), World(), targets=tuple(f"t{i}" for i in range(TARGETS)), workers=2,
            detail=detail)
    assert set(run_chunk.signatures) == compiled
