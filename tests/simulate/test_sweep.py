"""Candidates as columns: K policies x N targets replayed as K x N columns of one compiled run give each policy
exactly the figures it gets alone, however the policies are chunked and wherever the chunks run."""

from dataclasses import replace

import numpy as np
import pytest

from scaler.policy.model import Policy
from scaler.recordings.load import load_recording
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.grid import apply, grid, parse_grid
from scaler.simulate.judge import hpa_curve
from scaler.simulate.replay import demand_for, run
from scaler.simulate.sweep import LocalPool, Runner, chunks, figures, replay_side_by_side
from scaler.simulate.world import World
from tests.conftest import ROOT
from tests.simulate.test_equivalence import POLICIES, TARGETS, demand

TOTALS = {"replica_hours": "replica_hours", "violation_seconds": "slo_violation_seconds",
          "no_data_seconds": "no_data_seconds", "scale_ups": "scale_ups", "scale_downs": "scale_downs",
          "peak_replicas": "peak_replicas"}


def variants(policy: Policy) -> list[Policy]:
    """The policy and three others that differ in every setting its algorithm lets a grid vary."""
    out = [policy]
    for t, u, d, stab, cool in ((0.9, 1.05, 0.9, 0, 0), (1.15, 1, 1.05, 120, 60), (1, 0.95, 1, 45, 30)):
        settings = {"target": t}
        if policy.algorithm == "scaler":
            settings |= {"up": u, "down": d, "down_cooldown": cool, "up_cooldown": cool / 2}
        if not policy.legacy:
            settings |= {"down_stabilization": stab, "up_stabilization": stab / 3}
        if not any(m.kind == "utilization" for m in policy.metrics):
            settings.pop("target")
        out.append(apply(policy, settings))
    return out


@pytest.mark.parametrize("name", list(POLICIES), ids=list(POLICIES))
def test_each_candidates_columns_equal_the_policy_run_alone(name):
    """4 policies x 7 targets (bursty load, recording gaps, gauges, counts outside the bounds) in one run."""
    policy = POLICIES[name]()
    candidates = variants(policy)
    dem = demand(policy)
    world = World(startup_delay=45, lag=30)
    together = replay_side_by_side(candidates, dem, world)
    assert together.replica_hours.shape == (len(candidates) * TARGETS,)
    differ = set()
    for k, c in enumerate(candidates):
        alone = run(c, dem, world, targets=tuple(f"t{i}" for i in range(TARGETS)), record=False, workers=1)
        cols = slice(k * TARGETS, (k + 1) * TARGETS)
        for field, result_field in TOTALS.items():
            np.testing.assert_array_equal(getattr(together, field)[cols], getattr(alone, result_field),
                                          err_msg=f"candidate {k}: {field}")
        differ.add(float(alone.replica_hours.sum()))
    assert len(differ) > 1  # the candidates do behave differently


def test_hpa_at_every_cpu_target_side_by_side_is_judge_hpa_curve():
    """HPA's curve drawn as one run of its CPU targets side by side is the one `scaler simulate --sweep-hpa`
    draws run by run."""
    web = POLICIES["web"]()
    rec = load_recording(ROOT / "scaler" / "data" / "ec2_cpu_utilization_5f5533.csv", metric="cpu")
    keep = rec.times < rec.times[0] + 2 * 86400
    rec = replace(rec, times=rec.times[keep], metrics={k: v[:, keep] for k, v in rec.metrics.items()})
    world = World(recorded_replicas=13.0, slo=web.slo)
    targets = (40, 60, 70, 85)
    curve = hpa_curve(web, rec, world, targets=targets)
    hpas = [hpa_baseline(web, cpu_target=float(t)) for t in targets]
    f = figures(hpas, demand_for(hpas[0], rec, world), world)
    for k, p in enumerate(curve.points):
        assert (f.replica_hours[k], f.violation_seconds[k] / 3600) == (p.replica_hours, p.violation_hours)


@pytest.mark.parametrize("count, targets, workers, sizes", [
    (200, 1, 2, [100, 100]),
    (200, 1000, 2, [1] * 200),
    (200, 20, 2, [51, 51, 51, 47]),
    (5, 1, 8, [1] * 5),
    (7, 10_000, 1, [1] * 7),
    (0, 3, 2, []),
], ids=["one-target", "a-fleet", "a-few-targets", "more-workers-than-policies", "wider-than-a-chunk", "none"])
def test_chunks_are_as_wide_as_allowed_and_one_per_worker_at_least(count, targets, workers, sizes):
    got = chunks(count, targets, workers)
    assert [len(c) for c in got] == sizes
    assert [i for c in got for i in c] == list(range(count))


def test_the_figures_are_the_same_in_one_process_and_in_a_pool():
    policy = POLICIES["mixed"]()
    g = grid(policy, parse_grid(["target=0.9,1", "up=1,1.05", "down=1", "down_stabilization=0s,90s",
                                 "down_cooldown=45s", "up_cooldown=30s", "up_stabilization=30s"]))
    candidates = [c.policy for c in g.candidates]
    dem = demand(policy)
    here = Runner().figures(candidates, dem, World())
    pooled = LocalPool(2).figures(candidates, dem, World())
    for field in ("replica_hours", "violation_seconds", "scale_ups", "scale_downs"):
        np.testing.assert_array_equal(getattr(here, field), getattr(pooled, field), err_msg=field)
    assert here.replica_hours.shape == (len(candidates),) and len(set(here.replica_hours)) > 1
