"""A metric the recording does not have and the world does not simulate (memory beside CPU) is absent by
design: left out of the decisions and said once; with its own column it replays what was recorded."""

from __future__ import annotations

import numpy as np

from scaler.policy.model import Policy
from scaler.recordings.model import Recording
from scaler.simulate.replay import simulate
from scaler.simulate.world import World

T0 = 1_700_000_000.0
CPU = {"name": "cpu", "query": "cpu_q", "target": 70, "scale_up_above": 80, "scale_down_below": 50,
       "window": {"type": "last"}}
MEMORY = {"name": "memory", "query": "mem_q", "target": 80, "scale_up_above": 85, "scale_down_below": 30,
          "window": {"type": "last"}}


def policy(*metrics) -> Policy:
    return Policy.model_validate({
        "name": "p", "replicas": {"min": 1, "max": 20}, "metrics": list(metrics),
        "behavior": {"scale_up": {"stabilization": 0, "policies": [{"type": "pods", "value": 100, "period": 15}]},
                     "scale_down": {"stabilization": 0, "policies": [{"type": "percent", "value": 100,
                                                                       "period": 15}]}}})


def recording(**metrics) -> Recording:
    n = len(next(iter(metrics.values())))
    return Recording(source="test", times=T0 + 15.0 * np.arange(n), targets=("a",),
                     metrics={k: np.asarray(v, dtype=float)[None, :] for k, v in metrics.items()}, replicas=None,
                     step=15.0)


def test_a_metric_neither_recorded_nor_simulated_is_left_out_and_said_once():
    cpu = np.r_[np.full(40, 90.0), np.full(40, 20.0)]  # busy, then idle: up, then down
    with_memory = simulate(policy(CPU, MEMORY), recording(cpu=cpu), World())
    alone = simulate(policy(CPU), recording(cpu=cpu), World())
    # memory, always missing, would hold every scale-down; absent by design, it changes nothing
    np.testing.assert_array_equal(with_memory.timeline.desired, alone.timeline.desired)
    assert with_memory.scale_downs.sum() > 0
    assert [n for n in with_memory.notes if "memory" in n] == [
        "memory: not in the recording, so absent by design: left out of p's decisions (the live loop reads it)"]


def test_a_recorded_memory_column_replays_as_recorded_and_can_scale_up():
    cpu = np.full(60, 40.0)  # inside the band: CPU alone holds
    memory = np.r_[np.full(20, 50.0), np.full(40, 95.0)]  # memory climbs past 85 %
    r = simulate(policy(CPU, MEMORY), recording(cpu=cpu, memory=memory), World(lag=0))
    assert r.scale_ups.sum() > 0 and r.timeline.desired[-1, 0] > r.timeline.desired[0, 0]
    np.testing.assert_array_equal(r.timeline.observed[30:, 1, 0], 95.0)  # what the controller read: the record
